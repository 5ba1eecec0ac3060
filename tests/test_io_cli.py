"""``lstmkit convert`` and ``lstmkit summary FILE`` end to end."""
import numpy as np
import pytest
import torch

import lstmkit
from lstmkit.cli import main


@pytest.fixture()
def pt_file(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.GRU(5, 8, 2, bidirectional=True)
    torch.save(module.state_dict(), tmp_path / "m.pt")
    return tmp_path / "m.pt", module


def test_convert_through_every_format_and_back(pt_file, tmp_path, capsys):
    path, module = pt_file
    chain = ["m.pt", "m.safetensors", "m.onnx", "m.keras", "back.pth"]
    for src, dst in zip(chain, chain[1:]):
        assert main(["convert", str(tmp_path / src), str(tmp_path / dst)]) == 0
        out = capsys.readouterr().out
        assert f"wrote {tmp_path / dst}" in out and "GRU(input_size=5, hidden_size=8, num_layers=2" in out
        assert "1,968 parameters" in out  # 2 directions x ((24*5 + 24*8 + 48) + (24*16 + 24*8 + 48))
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(back[name].numpy(), value.numpy(), err_msg=name)


def test_convert_refuses_to_overwrite_without_the_flag(pt_file, tmp_path, capsys):
    path, _ = pt_file
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep me")
    assert main(["convert", str(path), str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["convert", str(path), str(out), "--overwrite"]) == 0
    assert lstmkit.load(out).config.mode == "GRU"


def test_convert_flags_format_streaming_and_batch_first(tmp_path, capsys):
    torch.save(torch.nn.LSTM(5, 8, proj_size=3).state_dict(), tmp_path / "p.pth")
    assert main(["convert", str(tmp_path / "p.pth"), str(tmp_path / "p.bin"), "--format", "onnx", "--streaming",
                 "--batch-first"]) == 0
    assert "streaming" in capsys.readouterr().out
    layer = lstmkit.io.read(tmp_path / "p.bin", "onnx")
    assert layer.config.proj_size == 3 and layer.config.batch_first
    assert main(["convert", str(tmp_path / "p.pth"), str(tmp_path / "p.keras")]) == 2
    assert "proj_size=3" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "p.pth"), str(tmp_path / "p.txt")]) == 2
    assert "unknown extension" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "missing.pt"), str(tmp_path / "x.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("ext", ["pt", "safetensors", "onnx", "keras"])
def test_summary_of_a_file(ext, pt_file, tmp_path, capsys):
    path, _ = pt_file
    if ext != "pt":
        main(["convert", str(path), str(tmp_path / f"m.{ext}")])
        capsys.readouterr()
    assert main(["summary", str(tmp_path / f"m.{ext}")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GRU(input_size=5, hidden_size=8, num_layers=2") and "1,968 in torch" in out


def test_summary_flags_still_work_and_need_sizes(capsys):
    assert main(["summary", "--input-size", "5", "--hidden-size", "10", "--mode", "gru"]) == 0
    assert "GRU(" in capsys.readouterr().out
    assert main(["summary"]) == 2
    assert "--input-size" in capsys.readouterr().err


def test_convert_says_which_options_the_output_format_cannot_hold(tmp_path, capsys):
    """A .pt state_dict holds tensors only and a Keras model is batch-first with no dropout between layers: the
    options lost on the way are named (they were dropped without a word), and a format that holds them says
    nothing."""
    pytest.importorskip("keras")
    src = tmp_path / "m.safetensors"
    lstmkit.save(lstmkit.LSTM(3, 4, num_layers=2, batch_first=True, dropout=0.3), src)
    assert main(["convert", str(src), str(tmp_path / "m.pt")]) == 0
    err = capsys.readouterr().err
    assert "does not record batch_first=True or dropout=0.3 between layers" in err
    assert main(["convert", str(src), str(tmp_path / "m.keras")]) == 0
    err = capsys.readouterr().err
    assert "dropout=0.3 between layers" in err and "batch_first" not in err
    lstmkit.save(lstmkit.GRU(3, 4), src, overwrite=True)
    assert main(["convert", str(src), str(tmp_path / "g.keras")]) == 0
    assert "batch_first=False (Keras models take (batch, time, features))" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "g.pt")]) == 0
    assert main(["convert", str(src), str(tmp_path / "g.onnx")]) == 0
    assert "note:" not in capsys.readouterr().err

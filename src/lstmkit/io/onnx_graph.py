"""ONNX import: the graph around the LSTM/GRU nodes, checked before they are read as one stack.

What lstmkit reads is a stack: graph input -> node 1 -> ... -> node L -> graph output, the data passing between
them only through the layout ops the known exporters write (torch.onnx.export, tf2onnx, lstmkit's to_onnx). Those
are followed with each axis labelled (T time, B batch, F features, D directions, H units), so a path that does not
bring the data to the form the next node, or the caller, reads is refused rather than read as a stack. A node's
initial_h/initial_c and sequence_lens must be empty, zeros, or graph inputs (the layer's call arguments hx and
lengths); the final-state outputs must be the nodes' Y_h/Y_c, moved, never computed. ``read_flow`` is the entry.
"""
from __future__ import annotations

import numpy as np


def graph_input_names(graph) -> list[str]:
    """The graph's inputs that no initializer fills: what a caller feeds."""
    initialized = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initialized]


_SEQ, BATCH, STEP = ("T", "B", "F"), ("B", "T", "F"), ("B", "F")
_FORM_NAMES = {_SEQ: "(T, B, features)", BATCH: "(B, T, features)", STEP: "one step (B, features)"}
_LAYOUT_OPS = ("Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze")
# between the nodes' Y_h/Y_c and an h_n/c_n output: data moved or picked, never computed (Where/Equal: to_onnx's
# and lstmkit.torch's initial state kept for an empty sequence)
_STATE_OPS = ("Identity", "Cast", "Squeeze", "Unsqueeze", "Concat", "Slice", "Gather", "Where", "Equal")
_STATE_FROM_INPUT = ("Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape", "Slice")  # hx / lengths passed on as is
_KEEPS_ZERO = ("Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape", "Slice", "Transpose", "Expand", "Tile")
_FLOAT_TYPES = (1, 11)  # TensorProto.FLOAT, DOUBLE
_OUTPUT_NAMES = ("Y", "Y_h", "Y_c")
_STACK = "lstmkit reads a stack of LSTM/GRU nodes from the graph input to the graph output"


def node_name(node) -> str:
    """How a message names a node: its op and its name (or first output): "LSTM node 'l0'"."""
    return f"{node.op_type} node {node.name or (node.output[0] if node.output else '?')!r}"


def _attr(node, name, default=None):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _declared_dims(value_info) -> tuple | None:
    """A graph input's declared dims (a positive int where fixed, else None), or None when no shape is declared."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)


class _Flow:
    """A graph's dataflow as the import reads it: each tensor's producer, the constants (initializers, Constant
    nodes, weights given in inputs=), the graph inputs and their declared dims."""

    def __init__(self, graph, consts: dict):
        self.producer = {out: node for node in graph.node for out in node.output if out}
        self.consts = consts
        self.inputs = {name for name in graph_input_names(graph) if name not in consts}
        self.dims = {i.name: _declared_dims(i) for i in graph.input}

    def ints(self, name) -> list[int] | None:
        """A constant integer tensor's values, or None."""
        value = self.consts.get(name) if name else None
        if value is None or value.dtype.kind not in "iu":
            return None
        return [int(v) for v in value.reshape(-1)]

    def axes(self, node) -> list[int] | None:
        """Squeeze/Unsqueeze's axes: the input (opset 13+) or the attribute; None when absent or not constant."""
        if len(node.input) > 1 and node.input[1]:
            return self.ints(node.input[1])
        axes = _attr(node, "axes")
        return None if axes is None else [int(a) for a in axes]

    def describe(self, tensor) -> str:
        if not tensor:
            return "nothing"
        if tensor in self.consts:
            return f"the constant {tensor!r}"
        if tensor in self.inputs:
            return f"the graph input {tensor!r}"
        node = self.producer.get(tensor)
        if node is None:
            return f"{tensor!r}, which nothing in the graph produces"
        if node.op_type in ("LSTM", "GRU"):
            index = list(node.output).index(tensor)
            return f"{_OUTPUT_NAMES[index] if index < 3 else f'output {index}'} of {node_name(node)}"
        return node_name(node)

    def layout_path(self, tensor) -> tuple[str, list]:
        """(source, ops): the tensor that ``tensor`` is made from by layout ops alone, and those ops in data order."""
        ops = []
        while tensor not in self.consts and tensor in self.producer and len(ops) <= len(self.producer):
            node = self.producer[tensor]
            if node.op_type not in _LAYOUT_OPS or not node.input:
                break
            ops.append(node)
            tensor = node.input[0]
        return tensor, ops[::-1]


def _through(ops) -> str:
    return f" through {', '.join(node_name(n) for n in ops)}" if ops else ""


def _x_axes(layer) -> tuple:
    return BATCH if layer["layout"] == 1 else _SEQ


def _y_axes(layer) -> tuple:
    """The axes of a node's output Y: (T, D, B, H), or (B, T, D, H) with layout=1."""
    return ("B", "T", "D", "H") if layer["layout"] == 1 else ("T", "D", "B", "H")


def _follow(flow, axes: tuple, sizes: dict, ops) -> tuple:
    """The axes of the data after the layout ops ``ops``; ValueError naming the op that does not keep the data's
    order as lstmkit reads it (a scrambling Transpose or Reshape, a cast to a narrower type, ...)."""
    for node in ops:
        axes = _LAYOUT_RULES[node.op_type](flow, node, axes, sizes)
        if "D" not in axes and "H" in axes:  # one direction squeezed out: the units are the features
            axes = tuple("F" if a == "H" else a for a in axes)
    return axes


def _cast_axes(flow, node, axes, sizes):
    if _attr(node, "to") not in _FLOAT_TYPES:
        raise ValueError(f"{node_name(node)}: casts the data to element type {_attr(node, 'to')}; lstmkit reads "
                         "float32 or float64 data only")
    return axes


def _transpose_axes(flow, node, axes, sizes):
    perm = list(_attr(node, "perm", range(len(axes) - 1, -1, -1)))
    if sorted(perm) != list(range(len(axes))):
        raise ValueError(f"{node_name(node)}: perm {perm} does not fit data with axes {axes}")
    return tuple(axes[p] for p in perm)


def _squeeze_axes(flow, node, axes, sizes):
    where = node_name(node)
    drop = flow.axes(node)
    if drop is None:
        raise ValueError(f"{where}: no constant axes (it would drop whichever axes have size 1)")
    drop = {a % len(axes) for a in drop} if axes else set()
    for a in drop:
        if not (axes[a] == "T" or (axes[a] == "D" and sizes.get("D") == 1)):
            raise ValueError(f"{where}: squeezes axis {a} ({axes[a]}) of data with axes {axes}; lstmkit reads only "
                             "the direction axis of a one-direction node (or the time axis of one step) squeezed")
    return tuple(label for i, label in enumerate(axes) if i not in drop)


def _unsqueeze_axes(flow, node, axes, sizes):
    where = node_name(node)
    add = flow.axes(node)
    if add is None or len(add) != 1 or "T" in axes:
        raise ValueError(f"{where}: inserts axes {add} into data with axes {axes}; lstmkit reads only a time axis "
                         "inserted into one step (B, features)")
    out = list(axes)
    out.insert(add[0] % (len(axes) + 1), "T")
    return tuple(out)


def _reshape_axes(flow, node, axes, sizes):
    """A Reshape that keeps each axis or merges the direction and unit axes (D, H) into features; the target
    shape a constant, or computed from the data's own Shape as the dynamo exporter does."""
    where = node_name(node)
    target = node.input[1] if len(node.input) > 1 else ""
    entries = _shape_entries(flow, target, node.input[0], len(axes))
    if entries is None:
        raise ValueError(f"{where}: its shape {target!r} is {flow.describe(target)}, not a constant lstmkit can check")
    groups = _reshape_groups(entries, axes, sizes, bool(_attr(node, "allowzero", 0)))
    shown = [e if isinstance(e, int) else "×".join(f"dim{i}" for i in e) for e in entries]
    if groups is None:
        fixing = any(isinstance(e, int) and e > 0 for e in entries)
        unfixed = [a for a in ("T", "B") if a in axes and sizes.get(a) is None and fixing]
        why = (f"; it fixes sizes of axes whose size the graph input does not fix ({', '.join(unfixed)}), so it keeps "
               "them only for the size it was exported with (export with fixed sizes)") if unfixed else ""
        raise ValueError(f"{where}: shape {shown} does not keep the axes {axes} of its data in place{why}")
    out = []
    for group in groups:
        labels = tuple(axes[i] for i in group)
        if sizes.get("D") == 1 and len(labels) > 1:  # a direction axis of size 1 merges with anything
            labels = tuple(a for a in labels if a != "D")
        if len(labels) != 1 and labels != ("D", "H"):
            raise ValueError(f"{where}: shape {shown} merges the axes {labels} of data with axes {axes}; lstmkit "
                             "reads only the direction and unit axes merged into features")
        out.append(labels[0] if len(labels) == 1 else "F")
    return tuple(out)


_LAYOUT_RULES = {"Identity": lambda flow, node, axes, sizes: axes, "Cast": _cast_axes, "Transpose": _transpose_axes,
                 "Squeeze": _squeeze_axes, "Unsqueeze": _unsqueeze_axes, "Reshape": _reshape_axes}


def _shape_entries(flow, name, data, rank, depth=0) -> list | None:
    """A Reshape's target shape as a list of ints and tuples of ``data``'s axes (the product of those dims), or
    None where it is neither a constant nor Shape/Slice/Gather/Concat/Mul of ``data``'s own shape."""
    if name in flow.consts:
        return flow.ints(name)
    node = flow.producer.get(name)
    if node is None or depth > 16 or not node.input:
        return None
    op, first = node.op_type, node.input[0]
    if op == "Shape":
        dims = [(i,) for i in range(rank)][_attr(node, "start", 0):_attr(node, "end", None)]
        return dims if first == data else None
    if op == "Concat":
        parts = [_shape_entries(flow, i, data, rank, depth + 1) for i in node.input]
        return None if any(p is None for p in parts) else [e for p in parts for e in p]
    base = _shape_entries(flow, first, data, rank, depth + 1)
    if base is None:
        return None
    if op in ("Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape"):
        return base
    if op == "Slice":
        span = _first_axis_span(flow, node)
        return None if span is None else base[span[0]:span[1]]
    if op == "Gather":
        index = flow.ints(node.input[1]) if len(node.input) > 1 else None
        if index is None or _attr(node, "axis", 0) != 0 or any(not -len(base) <= i < len(base) for i in index):
            return None
        return [base[i] for i in index]
    if op == "Mul" and len(node.input) == 2:
        other = _shape_entries(flow, node.input[1], data, rank, depth + 1)
        return None if other is None or len(base) != 1 or len(other) != 1 else _product(base[0], other[0])
    return None


def _product(a, b) -> list | None:
    """[a·b] for two shape entries (ints, or tuples of axes), or None where lstmkit cannot say what it is."""
    if isinstance(a, int) and isinstance(b, int):
        return [a * b]
    if isinstance(a, int) or isinstance(b, int):
        return [b if a == 1 else a] if 1 in (a, b) else None
    return None if set(a) & set(b) else [tuple(sorted(a + b))]


def _reshape_groups(entries, axes, sizes, allowzero) -> list[tuple] | None:
    """Which consecutive input axes each output dim of a Reshape holds, or None where an entry cuts across axes
    (or fixes a size lstmkit does not know). The entries before a -1 take axes from the front, those after it
    from the back, and the -1 what is left."""
    if sum(e == -1 for e in entries) > 1:
        return None
    split = entries.index(-1) if -1 in entries else len(entries)
    n = len(axes)
    front = _take(list(enumerate(entries))[:split], list(range(n)), axes, sizes, allowzero)
    if front is None:
        return None
    groups, left = front
    back = _take(list(enumerate(entries))[split + 1:][::-1], left[::-1], axes, sizes, allowzero)
    if back is None:
        return None
    tail, rest = back
    if split < len(entries):  # the -1 holds the axes between
        if not rest:
            return None
        groups.append(tuple(sorted(rest)))
    elif rest:
        return None
    return groups + tail[::-1]


def _take(entries, order, axes, sizes, allowzero):
    """(groups, axes left): each entry's axes taken from the front of ``order``; None where one does not fit."""
    groups = []
    for index, entry in entries:
        if entry == 0 and not allowzero:
            entry = (index,)  # 0 copies the input's dim at the same index
        if isinstance(entry, tuple):
            if sorted(entry) != sorted(order[:len(entry)]) or not entry:
                return None
        elif entry > 0:
            size, count = 1, 0
            while size < entry and count < len(order):
                known = sizes.get(axes[order[count]])
                if known is None:
                    return None
                size, count = size * known, count + 1
            if size != entry or count == 0:
                return None
            entry = order[:count]
        else:
            return None
        groups.append(tuple(sorted(entry)))
        order = order[len(entry):]
    return groups, order


def _as_output(axes: tuple) -> tuple:
    """The form a graph output has for the caller: Y as the node writes it, (T, D, B, H) or transposed with the
    directions before the units, is lstmkit's output (T, B, D·H) before its reshape."""
    if "D" in axes and "H" in axes and axes.index("D") < axes.index("H"):
        return tuple("F" if a == "H" else a for a in axes if a != "D")
    return axes


def _input_form(flow, node, layer) -> tuple[tuple, dict]:
    """(form, sizes): the form of the graph input the first node reads as X, (T, B, I), (B, T, I) or one step
    (B, I), and the time and batch sizes its declared dims fix; ValueError when X is not made from a graph input
    by layout ops alone."""
    where = layer["where"]
    source, ops = flow.layout_path(node.input[0])
    if source not in flow.inputs:
        raise ValueError(f"{where}: its input X comes from {flow.describe(source)}{_through(ops)}; {_STACK}, "
                         "the data passing between them only through layout ops (Transpose, Reshape, Squeeze...)")
    dims = flow.dims.get(source)
    problems = []
    for form in (_SEQ, BATCH, STEP):
        if dims is not None and len(dims) != len(form):
            continue
        sizes = {"T": 1} if form == STEP else {}
        sizes.update({label: size for label, size in zip(form, dims or ()) if label in "TB"})
        sizes = {"T": None, "B": None, **sizes}
        try:
            if _follow(flow, form, {**sizes, "F": layer["input_size"]}, ops) == _x_axes(layer):
                return form, sizes
        except ValueError as e:
            problems.append(str(e))
    detail = problems[0] if problems else f"they do not give the {_FORM_NAMES[_x_axes(layer)]} the node reads"
    raise ValueError(f"{where}: its input X is the graph input {source!r}{_through(ops)}, which lstmkit cannot "
                     f"read as a sequence: {detail}")


def _y_sizes(layer, sizes) -> dict:
    D, H = layer["directions"], layer["hidden"]
    return {**sizes, "D": D, "H": H, "F": D * H}


def _check_chain(flow, nodes, layers, sizes) -> None:
    """Node k's X is node k−1's Y, through layout ops that give the (T, B, features) the node reads."""
    for k in range(1, len(nodes)):
        where, before = layers[k]["where"], layers[k - 1]["where"]
        source, ops = flow.layout_path(nodes[k].input[0])
        if not nodes[k - 1].output or source != nodes[k - 1].output[0]:
            raise ValueError(f"{where}: its input X comes from {flow.describe(source)}{_through(ops)}, not from "
                             f"the output Y of {before} before it; {_STACK}, each node reading the one before it")
        axes = _follow(flow, _y_axes(layers[k - 1]), _y_sizes(layers[k - 1], sizes), ops)
        if axes != _x_axes(layers[k]):
            raise ValueError(f"{where}: its input X is the Y of {before}{_through(ops)} with axes {axes}, where the "
                             f"node reads {_x_axes(layers[k])}")


def _check_outputs(flow, graph, nodes, layers, form, sizes) -> None:
    """Each graph output is the last node's Y (through layout ops, in the graph input's form) or a final state
    made of the nodes' Y_h/Y_c; ValueError naming the output otherwise."""
    ys = {n.output[0]: layer for n, layer in zip(nodes, layers) if n.output and n.output[0]}
    states = {t: (i, k) for k, n in enumerate(nodes) for i, t in enumerate(n.output[:3]) if i and t}
    last = nodes[-1].output[0] if nodes[-1].output else ""
    for output in graph.output:
        source, ops = flow.layout_path(output.name)
        if source not in ys:
            _check_state_output(flow, output.name, ys, states)
            continue
        where = f"graph output {output.name!r}"
        if source != last:
            raise ValueError(f"{where} is the Y of {ys[source]['where']}, not of the last node; {_STACK}")
        axes = _as_output(_follow(flow, _y_axes(layers[-1]), _y_sizes(layers[-1], sizes), ops))
        if axes != form:
            raise ValueError(f"{where}: the last node's Y{_through(ops)} has axes {axes}, not the graph input's "
                             f"form {_FORM_NAMES[form]} in which lstmkit's layer returns its output")


def _check_state_output(flow, name, ys, states) -> None:
    """An output that is not the stack's Y must be made of the nodes' Y_h (or Y_c), each once and in layer order,
    by ops that move data only; ``states`` maps each node's Y_h/Y_c to (output index, node index)."""
    reached = _state_parts(flow, name, name, ys, states, {})
    if not reached:
        raise ValueError(f"graph output {name!r} is made of neither the last node's Y nor the nodes' Y_h/Y_c; "
                         f"{_STACK}")
    kinds, order = {_OUTPUT_NAMES[kind] for kind, _ in reached}, [k for _, k in reached]
    if len(kinds) > 1 or order != sorted(set(order)):
        raise ValueError(f"graph output {name!r} is made of {', '.join(_OUTPUT_NAMES[i] for i, _ in reached)} of "
                         f"nodes {order}; lstmkit's h_n (c_n) holds each layer's Y_h (Y_c) once, in layer order")


def _state_parts(flow, tensor, name, ys, states, memo, depth=0) -> list:
    """The nodes' (Y_h/Y_c index, node index) that ``tensor``, part of the graph output ``name``, is made of, in
    data order; ValueError where it computes rather than moves data, or joins the states with anything else."""
    if tensor in states:
        return [states[tensor]]
    if not tensor or tensor in flow.consts or tensor in flow.inputs or tensor not in flow.producer:
        return []
    if tensor in ys:
        raise ValueError(f"graph output {name!r} is computed from the Y of {ys[tensor]['where']} by more than "
                         f"layout ops; {_STACK}: its output is the last node's Y, its final states the Y_h/Y_c")
    node = flow.producer[tensor]
    if node.op_type not in _STATE_OPS or depth > 64:
        raise ValueError(f"graph output {name!r} is computed by {node_name(node)}; {_STACK}: its output is the "
                         "last node's Y, its final states the nodes' Y_h/Y_c (joined by Concat, picked by "
                         "Slice/Gather/Squeeze)")
    if tensor not in memo:
        parts = [_state_parts(flow, t, name, ys, states, memo, depth + 1) for t in node.input]
        if node.op_type == "Concat" and not all(parts):
            other = next(t for t, part in zip(node.input, parts) if not part)
            raise ValueError(f"graph output {name!r}: {node_name(node)} joins the final states with "
                             f"{flow.describe(other)}; lstmkit's h_n/c_n hold the nodes' Y_h/Y_c alone")
        memo[tensor] = [p for part in parts for p in part]
    return memo[tensor]


def _is_zero(flow, tensor, depth=0) -> bool:
    """Whether ``tensor`` is all zeros: a zero constant, or one shaped by Expand/ConstantOfShape/Tile/Slice...,
    as torch.onnx.export writes a zero initial state."""
    if tensor in flow.consts:
        return not np.any(flow.consts[tensor])
    node = flow.producer.get(tensor)
    if node is None or depth > 32 or not node.input and node.op_type != "ConstantOfShape":
        return False
    if node.op_type == "ConstantOfShape":
        from onnx import numpy_helper

        value = _attr(node, "value")  # absent: a float 0
        return value is None or not np.any(numpy_helper.to_array(value))
    if node.op_type == "Concat":
        return all(_is_zero(flow, t, depth + 1) for t in node.input)
    return node.op_type in _KEEPS_ZERO and _is_zero(flow, node.input[0], depth + 1)


def _first_axis_span(flow, node) -> tuple[int, int] | None:
    """(start, end) of a Slice that takes a range along axis 0 alone with step 1; None for any other Slice (or
    one whose arguments are not constants)."""
    if len(node.input) < 3:  # opset < 10: the attributes
        starts, ends, axes, steps = _attr(node, "starts"), _attr(node, "ends"), _attr(node, "axes"), None
    else:
        args = [flow.ints(node.input[i]) if len(node.input) > i and node.input[i] else [] for i in (1, 2, 3, 4)]
        if any(a is None for a in args):
            return None
        starts, ends, axes, steps = args
    if not starts or not ends or len(starts) != 1 or len(ends) != 1 or list(axes or [0]) != [0] \
            or list(steps or [1]) != [1]:
        return None
    return int(starts[0]), int(ends[0])


_HX = ("lstmkit's layer starts from the hx its caller passes (layer(x, hx)), so a state {} inside the graph cannot be "
       "carried")
_LENGTHS = ("lstmkit's layer runs the lengths its caller passes (layer(x, lengths=...)), so lengths {} inside the "
            "graph cannot be carried")


def _state_source(flow, tensor, where, rows, last) -> tuple[str, bool] | None:
    """(graph input, sliced) that a node's initial_h/initial_c reads, passed on by shape-only ops (the caller's
    hx then), or None when it is empty or zero; ValueError for a state fixed or computed inside the graph.

    rows: (start, stop) of the layer's rows in lstmkit's hx (L·D, B, H); a Slice on the way must take those."""
    if not tensor or _is_zero(flow, tensor):
        return None
    slices, source, steps = [], tensor, 0
    while source not in flow.consts and source not in flow.inputs and steps <= len(flow.producer):
        node, steps = flow.producer.get(source), steps + 1
        if node is None or node.op_type not in _STATE_FROM_INPUT or not node.input:
            break
        slices += [node] if node.op_type == "Slice" else []
        source = node.input[0]
    if source in flow.consts:
        raise ValueError(f"{where} is {flow.describe(source)}{_through(slices)}, not zeros; {_HX.format('fixed')}")
    if source not in flow.inputs:
        raise ValueError(f"{where} is computed by {flow.describe(source)}; {_HX.format('computed')}")
    span = _first_axis_span(flow, slices[0]) if len(slices) == 1 else None
    start, stop = rows
    if slices and (span is None or span[0] != start or not (span[1] == stop or last and span[1] >= stop)):
        taken = f"rows {span[0]}:{span[1]}" if span else "a part"
        raise ValueError(f"{where} is {taken} of the graph input {source!r}{_through(slices)}, where lstmkit's "
                         f"layer gives this node rows {start}:{stop} of hx (along its first axis)")
    return source, bool(slices)


def _lengths_source(flow, tensor, where) -> str | None:
    """The graph input a node's sequence_lens reads (through Identity/Cast...: the caller's lengths then), None
    when empty; ValueError for lengths fixed or computed inside the graph."""
    source, steps = tensor, 0
    while source and source not in flow.consts and source not in flow.inputs and steps <= len(flow.producer):
        node, steps = flow.producer.get(source), steps + 1
        if node is None or node.op_type not in _STATE_FROM_INPUT[:-1] or not node.input:  # no Slice of the batch
            break
        source = node.input[0]
    if not tensor or source in flow.inputs:
        return source or None
    fixed = "fixed" if source in flow.consts else "computed"
    raise ValueError(f"{where}: sequence_lens is {flow.describe(source)}; {_LENGTHS.format(fixed)}")


def _check_optional_inputs(flow, nodes, layers) -> str | None:
    """Each node's sequence_lens, initial_h and initial_c: empty, zeros, or graph inputs read as the caller's
    lengths and hx; the same lengths for every node. Returns the lengths' graph input (None without)."""
    lengths, readers = [], {}
    for k, (node, layer) in enumerate(zip(nodes, layers)):
        inputs, where, D = list(node.input) + [""] * 8, layer["where"], layer["directions"]
        lengths.append(_lengths_source(flow, inputs[4], where))
        for index, name in ((5, "initial_h"), (6, "initial_c"))[: 2 if layer["mode"] == "LSTM" else 1]:
            read = _state_source(flow, inputs[index], f"{where}: {name}", (k * D, (k + 1) * D), k == len(nodes) - 1)
            if read is not None and layer["layout"] == 1:
                raise ValueError(f"{where}: {name} is the graph input {read[0]!r}, which a layout=1 node reads as "
                                 "(B, D, H) where lstmkit's layer takes hx as (layers·D, B, H)")
            if read is not None:
                readers.setdefault((name, read[0]), []).append((where, read[1]))
    for (name, source), uses in readers.items():
        whole = next((where for where, sliced in uses if not sliced), None)
        if len(uses) > 1 and whole is not None:
            others = [w for w, _ in uses if w != whole]
            raise ValueError(f"{whole}: {name} is all of the graph input {source!r}, which {others[0]} reads too; "
                             "lstmkit's layer gives each layer its own rows of hx")
    for k, source in enumerate(lengths):
        if source != lengths[0]:
            shown = [f"the graph input {s!r}" if s else "empty" for s in (source, lengths[0])]
            raise ValueError(f"{layers[k]['where']}: sequence_lens is {shown[0]} where {layers[0]['where']}'s is "
                             f"{shown[1]}; lstmkit's layer runs one lengths, its caller's, for every layer")
    return lengths[0]


def _check_dataflow(flow, graph, nodes, layers) -> tuple:
    """The form of the graph's input and output ((T, B, I), (B, T, I) or one step (B, I)) after checking that the
    nodes are one stack: graph input -> node 1 -> ... -> node L -> graph output, through layout ops alone."""
    form, sizes = _input_form(flow, nodes[0], layers[0])
    _check_chain(flow, nodes, layers, sizes)
    _check_outputs(flow, graph, nodes, layers, form, sizes)
    return form


def read_flow(graph, consts: dict, nodes: list, layers: list) -> tuple[tuple, str | None]:
    """(form, lengths): the form of the graph's input and output (``BATCH``, one ``STEP``, or (T, B, I)) and the
    graph input the nodes read as sequence_lens (None without), after checking that ``nodes`` (read as ``layers``
    by onnx._read_node) are one stack fed by the graph input, states and lengths the caller's; ValueError naming
    the node, op or output otherwise. consts: the constants and given inputs by name."""
    flow = _Flow(graph, consts)
    form = _check_dataflow(flow, graph, nodes, layers)
    return form, _check_optional_inputs(flow, nodes, layers)

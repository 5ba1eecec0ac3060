import os
import sys

# tests/ holds helper modules (fuzz_targets) that tests and scripts import by name
sys.path.insert(0, os.path.dirname(__file__))

"""A ``--model`` module that parses ``sys.argv`` when imported, as training scripts often do."""
import argparse

parser = argparse.ArgumentParser(prog="train.py")
parser.add_argument("--epochs", type=int, required=True)
ARGS = parser.parse_args()  # used to print train.py's usage as if it were xvdeploy's


def build():
    raise AssertionError("never reached")

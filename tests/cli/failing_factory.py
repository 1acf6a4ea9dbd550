"""A ``--model`` factory that fails, for the CLI's bad-input tests."""


def build():
    return 1 / 0

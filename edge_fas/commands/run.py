"""`edge-fas run`: placeholder until its issue lands (see README status)."""

from edge_fas.errors import EdgeFasError

HELP = "run (not implemented yet)"


def add_arguments(parser):
    pass


def run(args):
    raise EdgeFasError("`edge-fas run` is not implemented yet in this build; see the README's status table")

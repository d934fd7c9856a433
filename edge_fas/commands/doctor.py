"""`edge-fas doctor`: which cameras, SDKs, runtimes and GPUs are usable here, and why not."""

HELP = "report which cameras, SDKs, runtimes and GPUs are usable here and why not"


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from edge_fas.doctor import main
    return main(as_json=args.json)

"""`edge-fas doctor`: which cameras, SDKs, runtimes and GPUs are usable here, and why not."""

HELP = "report which cameras, SDKs, runtimes and GPUs are usable here and why not"


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="a site config: also check that `edge-fas run` would start with it (model artifact, "
                             "calibration file, production's refusals and weakened checks), its webhook (reachable, "
                             "signed) and the running service's delivery statistics (deployment.status_file)")


def run(args):
    from edge_fas.doctor import main
    config = None
    if args.config:
        from edge_fas.config import load_config
        config = load_config(args.config)
    return main(as_json=args.json, config=config)

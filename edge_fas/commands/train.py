"""`edge-fas train`: train a model (see edge_fas/training/config.py for the config).

    edge-fas train --config configs/demo.yaml                         # synthetic rig
    edge-fas train --protocol mmdg-p1-cps-w --data-root /data/fas     # a paper's protocol on the real datasets
    edge-fas train --protocol mmdg-p1-cps-w --synthetic               # its synthetic stand-in
"""

from __future__ import annotations

import sys

import yaml

HELP = "train a model from a YAML training config (configs/*.yaml) or a named protocol; runs under torchrun too"


def add_arguments(parser):
    parser.add_argument("--config", metavar="FILE", help="training config YAML (see configs/); defaults if omitted")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set train.epochs=2 --set out=runs/x (value parsed as YAML)")
    add_data_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt if present")
    parser.add_argument("--print-config", action="store_true", help="print the effective config and exit")


def add_data_arguments(parser):
    """The protocol and data-root options train and eval share."""
    parser.add_argument("--protocol", metavar="NAME",
                        help="a paper's protocol (edge_fas/data/protocols.py; --list-protocols shows them): on the "
                             "real datasets under --data-root, or its synthetic stand-in with --synthetic")
    parser.add_argument("--data-root", metavar="DIR",
                        help="folder holding the public datasets (CeFA/, CASIA-SURF-CROP/, WMCA-Image/, PADISI/, ...) "
                             "and, unless --lists, the protocol lists (MMDG-Benchmark/, FlexModal_Protocols/, ...); "
                             "config key data.root")
    parser.add_argument("--lists", metavar="DIR", help="folder holding the protocol list files (default: the data root); "
                                                       "config key data.lists")
    parser.add_argument("--synthetic", action="store_true",
                        help="run --protocol on its synthetic stand-in domains instead of the real datasets")
    parser.add_argument("--list-protocols", action="store_true", help="list the protocols and the files each reads")


def parse_sets(items) -> dict:
    from edge_fas.errors import ConfigError

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=2")
        out[key.strip()] = yaml.safe_load(value)
    return out


def print_protocols() -> None:
    from edge_fas.data.protocols import PROTOCOLS

    for name, p in PROTOCOLS.items():
        where = ", ".join(p.list_files()) if p.real else "synthetic rig only"
        print(f"{name:32s} {p.paper}\n{'':32s} reads: {where}")


def config_from_args(args) -> dict:
    """The effective training config of --config, --set, --protocol/--data-root/--lists/--synthetic
    and --resume (train and `cache build` read the same options)."""
    from edge_fas.errors import ConfigError
    from edge_fas.training import apply_overrides, load_train_config

    overrides = parse_sets(args.set)
    if getattr(args, "resume", False):
        overrides["train.resume"] = True
    if args.protocol:
        from edge_fas.data.protocols import get_protocol
        from edge_fas.training import protocol_config

        base = load_train_config(args.config)
        root = args.data_root or overrides.pop("data.root", None) or base["data"]["root"]
        lists = args.lists or overrides.pop("data.lists", None) or base["data"]["lists"]
        pr = get_protocol(args.protocol)
        cfg = protocol_config(args.protocol, base["model"]["name"], base["model"]["preset"], base,
                              synthetic=args.synthetic or not pr.real, root=root, lists=lists)
        return apply_overrides(cfg, overrides)
    if args.synthetic:
        raise ConfigError("--synthetic runs a protocol's synthetic stand-in: pass --protocol NAME too")
    if args.data_root:
        overrides["data.root"] = args.data_root
    if args.lists:
        overrides["data.lists"] = args.lists
    return load_train_config(args.config, overrides)


def run(args) -> int:
    from edge_fas.training import train

    if args.list_protocols:
        print_protocols()
        return 0
    cfg = config_from_args(args)
    if args.print_config:
        from edge_fas.training import check_config

        # print what was merged first (that is what one debugs), then refuse it as train would: a config
        # that prints cleanly but stops at `train` would say two different things
        print(yaml.safe_dump(cfg, sort_keys=False), end="", flush=True)
        check_config(cfg)
        return 0
    result = train(cfg)
    v = result["val"]
    print(f"wrote {cfg['out']}/checkpoint.pt; validation EER {v['eer']}, AUC {v['auc']}, "
          f"threshold {result['threshold']:.4f}")
    from edge_fas.operating_point import refusal_warning

    warning = refusal_warning(result.get("operating_point"))
    if warning:
        print(f"edge-fas train: warning: {warning}", file=sys.stderr)
    for name, t in result.get("tests", {}).items():
        print(f"test {name} at the validation threshold: HTER {t['hter']}, APCER max {t['apcer_max']}, "
              f"BPCER {t['bpcer']}, AUC {t['auc']} ({result['test_data'][name]})")
    if "test_average" in result:
        a = result["test_average"]
        print(f"image-weighted average over {', '.join(a['sets'])} ({a['samples']} samples): HTER {a['hter']}, "
              f"AUC {a['auc']}")
    return 0

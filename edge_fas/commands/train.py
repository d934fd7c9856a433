"""`edge-fas train --config FILE`: train a model (see edge_fas/training.py for the config)."""

from __future__ import annotations

import yaml

HELP = "train a model from a YAML training config (configs/*.yaml); runs under torchrun too"


def add_arguments(parser):
    parser.add_argument("--config", metavar="FILE", help="training config YAML (see configs/); defaults if omitted")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set train.epochs=2 --set out=runs/x (value parsed as YAML)")
    parser.add_argument("--protocol", metavar="NAME",
                        help="run a named protocol on the synthetic domains (e.g. mmdg-p1-cps-w; see "
                             "edge_fas/data/protocols.py): sets the train/test domains and missing modalities")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt if present")
    parser.add_argument("--print-config", action="store_true", help="print the effective config and exit")


def parse_sets(items) -> dict:
    from edge_fas.errors import ConfigError

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=2")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args) -> int:
    from edge_fas.training import load_train_config, train

    overrides = parse_sets(args.set)
    if args.resume:
        overrides["train.resume"] = True
    if args.protocol:
        from edge_fas.data.protocols import protocol_config
        from edge_fas.training import apply_overrides

        base = load_train_config(args.config)
        cfg = apply_overrides(protocol_config(args.protocol, base["model"]["name"], base["model"]["preset"], base),
                              overrides)
    else:
        cfg = load_train_config(args.config, overrides)
    if args.print_config:
        print(yaml.safe_dump(cfg, sort_keys=False), end="")
        return 0
    result = train(cfg)
    v = result["val"]
    print(f"wrote {cfg['out']}/checkpoint.pt; validation EER {v['eer']}, AUC {v['auc']}, "
          f"threshold {result['threshold']:.4f}")
    if "test" in result:
        t = result["test"]
        print(f"test ({', '.join(cfg['data']['test_domains'])}) at the validation threshold: HTER {t['hter']}, "
              f"APCER max {t['apcer_max']}, BPCER {t['bpcer']}, AUC {t['auc']}")
    return 0

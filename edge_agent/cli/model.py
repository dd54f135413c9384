"""`edge-agent model info [--json]`: check and describe the health model the agent would load."""

from __future__ import annotations

from edge_agent.cli.output import print_json, table


def register(sub) -> None:
    p = sub.add_parser("model", help="describe the health model",
                       description="Describe the health model: its card, checked against the "
                                   "ONNX file it belongs to.")
    msub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    info = msub.add_parser("info", help="print the loaded model's card",
                           description="Load the model (default: [scoring].model of --config, "
                                       "else the packaged one), check it against its card, "
                                       "and print the card.")
    info.add_argument("--model", help="ONNX model file (its card beside it)")
    info.add_argument("--config", help="TOML config file whose [scoring].model to use")
    info.add_argument("--json", action="store_true", help="print the whole card as JSON")
    info.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def resolve(args):
    """Return the model path from --model, --config, or the packaged model."""
    from edge_agent.health.scorer import packaged_model

    if args.model:
        return args.model
    if args.config:
        from edge_agent.config import load_config

        cfg = load_config(args.config)
        if cfg.scoring.model:
            return cfg.scoring.model
    return str(packaged_model())


def run_info(args) -> int:
    from edge_agent.health.scorer import load_model

    model = load_model(resolve(args))
    card = model.card
    if args.json:
        print_json({"path": str(model.path), **card})
        return 0
    m = card.get("metrics", {}).get("model", {})
    print(f"model {card['version']} ({model.path})")
    print(f"  {card.get('estimator', {}).get('type', '?')}, "
          f"{card.get('estimator', {}).get('n_estimators', '?')} trees of depth "
          f"{card.get('estimator', {}).get('max_depth', '?')}; label: "
          f"{card.get('training', {}).get('label', '?')}")
    print(f"  threshold {card['threshold']} (watch {card['watch_threshold']}, hysteresis "
          f"{card.get('hysteresis', '?')})")
    for kind, t in sorted((card.get("class_thresholds") or {}).items()):
        print(f"  {kind}: threshold {t['threshold']} (watch {t['watch_threshold']})")
    train = card.get("training", {})
    print(f"  trained on {train.get('data', '?')}: {train.get('rows', '?')} rows, "
          f"{train.get('positives', '?')} positive")
    if m:
        print(f"  held-out: PR-AUC {m.get('pr_auc')}, precision at 80% recall "
              f"{m.get('precision_at_80_recall')}, median lead {m.get('median_lead_days')} days, "
              f"{m.get('false_alerts_per_100_device_weeks')} false alerts per 100 device-weeks")
    print(table(("#", "feature", "unit", "meaning"),
                [(i, f["name"], f.get("unit", ""), f.get("doc", ""))
                 for i, f in enumerate(card["features"])]))
    for limit in card.get("limits", []):
        print(f"  limit: {limit}")
    return 0

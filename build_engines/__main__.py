"""`python -m build_engines {install,build,ship,evaluate,export,tensorrt,install-repo,compare,sweep,speed-twin}`."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from build_engines.cache import build_dir, is_complete
from build_engines.config import BuildConfig
from build_engines.paths import GPU_REPOSITORY_DIR, MODEL_REPOSITORY_DIR
from build_engines.report import target_rows

log = logging.getLogger("build_engines")


def _config(args: argparse.Namespace) -> BuildConfig:
    config = BuildConfig()
    changes: dict[str, object] = {}
    if args.weak_intent:
        changes["weak_intent"] = args.weak_intent
    if args.intent_dataset:
        changes["external_intent"] = tuple(args.intent_dataset)
    if args.quantize:
        changes["quantize"] = args.quantize
    if args.seed is not None:
        changes["seed"] = args.seed
    config = config.replace(**changes)
    if args.method:
        config = config.with_method(args.method)
    return config if args.branch_layer is None else config.with_branch_layer(args.branch_layer)


def _cached_build(args: argparse.Namespace) -> Path:
    """The build of `--key`, else of the current code and flags, else the installed shipped model."""
    from build_engines.package import SHIPPED_DIR, installed_dir
    from build_engines.pipeline import key_for

    key = args.key or key_for(_config(args))
    directory = build_dir(key)
    if is_complete(directory):
        return directory
    if not args.key and (SHIPPED_DIR / "package.json").exists() and (installed_dir() / "COMPLETE").exists():
        log.info("no build for key %s here: using the installed shipped model %s", key, installed_dir())
        return installed_dir()
    sys.exit(
        f"no complete build for key {key} in {directory}: run `python -m build_engines install` (the shipped model) "
        "or `python -m build_engines build` (train it) first"
    )


def cmd_build(args: argparse.Namespace) -> None:
    from build_engines.pipeline import build

    outcome = build(_config(args), force=args.force, install=not args.no_install, presidio=not args.no_presidio)
    state = "cached" if outcome.cached else "built"
    print(f"{state} {outcome.key} in {outcome.seconds:.1f} s -> {outcome.directory}")
    _print_targets(outcome.directory)


def _print_targets(directory: Path) -> None:
    report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    for name, value, target, met in target_rows(report):
        print(f"  {name:<40} {value:7.3f}  target {target:.3f}  {'ok' if met else 'MISSED'}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    directory = _cached_build(args)
    if args.onnx:
        from build_engines.pipeline import evaluate_graph

        print(json.dumps(evaluate_graph(_config(args), Path(args.onnx)), indent=2))
    else:
        _print_targets(directory)


def cmd_export(args: argparse.Namespace) -> None:
    directory = _cached_build(args)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json", "manifest.json"):
        if (directory / name).exists():
            shutil.copyfile(directory / name, output / name)
    print(f"exported {directory.name} to {output}")


def cmd_tensorrt(args: argparse.Namespace) -> None:
    from build_engines.data.labels import INTENT_LABELS
    from build_engines.tensorrt_build import (
        EngineSpec,
        IncompatibleGraph,
        PlanRejected,
        TensorRTUnavailable,
        build_engine,
        write_gpu_repository,
    )

    repository = Path(args.repository)
    try:
        spec = EngineSpec(
            max_batch=args.max_batch,
            max_sequence=args.max_sequence,
            opt_batch=min(args.opt_batch, args.max_batch),
            opt_sequence=min(args.opt_sequence, args.max_sequence),
            fp16=not args.fp32,
            int8=args.int8,
        )
    except ValueError as e:
        sys.exit(f"tensorrt: {e}")
    if args.config_only:
        write_gpu_repository(repository, len(INTENT_LABELS), max_batch_size=args.max_batch, spec=spec)
        print(f"GPU model configs written under {repository}")
        return
    directory = Path(args.artefacts) if args.artefacts else _cached_build(args)
    onnx = directory / ("model.int8.onnx" if args.int8 else "model.onnx")
    missing = [p.name for p in (onnx, directory / "tokenizer.json", directory / "manifest.json") if not p.exists()]
    if missing:
        sys.exit(
            f"tensorrt: {directory} lacks {', '.join(missing)}; export a build there first with "
            f"`python -m build_engines export --output {directory}` (model_repository/ holds only the served graph)"
        )
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    longest = int(manifest.get("max_seq_length", 512))
    if longest > spec.max_sequence:
        sys.exit(f"tensorrt: the router sends up to {longest} tokens (manifest); --max-sequence is {spec.max_sequence}")
    try:
        plan = build_engine(
            onnx,
            repository / "signals" / "1" / "model.plan",
            spec,
            tokenizer_path=directory / "tokenizer.json",
            cache_dir=Path(args.cache_dir) if args.cache_dir else repository.parent / "tensorrt-cache",
            force=args.force,
        )
    except (TensorRTUnavailable, IncompatibleGraph, PlanRejected) as e:
        sys.exit(f"tensorrt: {e}")
    write_gpu_repository(repository, len(INTENT_LABELS), directory, max_batch_size=args.max_batch, spec=spec)
    print(f"GPU model repository at {repository} with {plan}")


def cmd_compare(args: argparse.Namespace) -> None:
    from build_engines.compare import compare
    from build_engines.paths import REPORTS_DIR

    keys = []
    for item in args.cached or []:
        key, _, label = item.partition("=")
        keys.append((label or key, key))
    print(compare(args.only, Path(args.output or REPORTS_DIR), keys))


def cmd_sweep(args: argparse.Namespace) -> None:
    from build_engines.compare import sweep
    from build_engines.paths import cache_root

    output = Path(args.output) if args.output else cache_root() / "sweep.jsonl"
    record = sweep(args.set or [], output)
    for row in record["history"]:
        print({k: round(v, 4) for k, v in row.items()})
    print(
        f"kept epoch {record['best_epoch']}, validation mean {record['best_val_score']:.4f}, "
        f"served jailbreak threshold {record['served_threshold']:.2f}; appended to {output}"
    )


def cmd_speed_twin(_: argparse.Namespace) -> None:
    from build_engines.compare import write_speed_twin
    from build_engines.paraphrase import load_pairs
    from build_engines.paths import REPORTS_DIR

    baseline = json.loads((REPORTS_DIR / "baseline.json").read_text(encoding="utf-8"))
    texts = [t for pair in load_pairs()[:150] for t in (pair.a, pair.b)]
    print(f"speed twin of {baseline['build_key']} at {write_speed_twin(baseline, texts)}")


def cmd_install(args: argparse.Namespace) -> None:
    from build_engines.pipeline import install_from_cache

    model_dir = install_from_cache(_cached_build(args), Path(args.repository))
    print(f"installed {model_dir}")


def cmd_install_shipped(args: argparse.Namespace) -> None:
    from build_engines.package import PackageMismatch, install
    from build_engines.pipeline import install_from_cache

    try:
        directory = install(Path(args.package), force=args.force)
    except PackageMismatch as e:
        sys.exit(f"install: {e}")
    model_dir = install_from_cache(directory, Path(args.repository))
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    print(f"installed the shipped signals model (build {manifest['build_key']}) into {model_dir}")


def cmd_ship(args: argparse.Namespace) -> None:
    from build_engines.model_card import ship

    directory = _cached_build(args)
    try:
        target = ship(directory, Path(args.output), allow_below_floors=args.allow_below_floors)
    except ValueError as e:
        sys.exit(f"ship: {e}")
    print(f"shipped build {directory.name} into {target} (and its reports into build_engines/reports/)")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--branch-layer", type=int, help="branch every task at this trunk layer (0 = 4 separate encoders)")
    p.add_argument("--method", choices=["full", "lora"], help="fine-tuning of every task top (default: per task)")
    p.add_argument("--weak-intent", choices=["auto", "on", "off"], help="WordNet/chatterbot weak intent data")
    p.add_argument(
        "--intent-dataset",
        action="append",
        metavar="NAME_OR_FILE",
        help="extra intent training data: a hub name (e.g. TIGER-Lab/MMLU-Pro) or a local "
        ".jsonl/.json/.csv/.parquet with question|text and category columns (repeatable)",
    )
    p.add_argument(
        "--quantize",
        choices=["auto", "on", "off"],
        help="serve the graph with int8 task tops: auto (default) = when validation stays within tolerance",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--key", help="use this build key instead of the one of the current code, data and flags")


def _shipped_dir() -> Path:
    from build_engines.paths import PACKAGE_DIR

    return PACKAGE_DIR / "shipped" / "signals"


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser (also used by the deployment tests to check the commands of compose and Kubernetes)."""
    parser = argparse.ArgumentParser(prog="python -m build_engines", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("install", help="install the shipped signals model (no training): rebuild, check, install")
    p.add_argument("--package", default=str(_shipped_dir()), help="the package folder (default: the shipped one)")
    p.add_argument("--repository", default=str(MODEL_REPOSITORY_DIR))
    p.add_argument("--force", action="store_true", help="rebuild the graphs even when installed already")
    p.set_defaults(func=cmd_install_shipped)

    p = sub.add_parser("ship", help="copy a build's package, model card and reports into the repository")
    _add_config_flags(p)
    p.add_argument("--output", default=str(_shipped_dir()))
    p.add_argument("--allow-below-floors", action="store_true", help="ship a model that misses a quality floor")
    p.set_defaults(func=cmd_ship)

    p = sub.add_parser("build", help="data, training, evaluation, ONNX, report and model repository (cached)")
    _add_config_flags(p)
    p.add_argument("--force", action="store_true", help="rebuild even when the cache has this key")
    p.add_argument("--no-install", action="store_true", help="do not touch model_repository/")
    p.add_argument("--no-presidio", action="store_true", help="skip the presidio-analyzer baseline")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("evaluate", help="print the held-out figures vs targets, or evaluate another ONNX graph")
    _add_config_flags(p)
    p.add_argument("--onnx", help="a signals ONNX graph to evaluate on the held-out splits")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="copy the ONNX graphs, tokenizer and manifest of a build to a folder")
    _add_config_flags(p)
    p.add_argument("--output", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("tensorrt", help="build a TensorRT plan and the GPU model repository (needs TensorRT)")
    _add_config_flags(p)
    p.add_argument("--artefacts", help="folder with model.onnx, tokenizer.json, manifest.json (default: the cache)")
    p.add_argument("--repository", default=str(GPU_REPOSITORY_DIR))
    p.add_argument("--max-batch", type=int, default=64, help="largest batch of every profile and of the config")
    p.add_argument("--max-sequence", type=int, default=512, help="longest sequence of every profile")
    p.add_argument("--opt-batch", type=int, default=16, help="batch the short-prompt profile is tuned for")
    p.add_argument("--opt-sequence", type=int, default=64, help="sequence the short-prompt profile is tuned for")
    p.add_argument("--fp32", action="store_true", help="no FP16 kernels")
    p.add_argument(
        "--int8",
        action="store_true",
        help="build model.int8.onnx with INT8 enabled; refused unless its Q/DQ nodes are signed int8 with zero "
        "points 0 (TensorRT explicit quantisation)",
    )
    p.add_argument("--config-only", action="store_true", help="write config.pbtxt files without building a plan")
    p.add_argument("--cache-dir", help="timing cache folder (default: tensorrt-cache beside --repository)")
    p.add_argument(
        "--force", action="store_true", help="rebuild even if a checked plan for this graph, GPU and TensorRT exists"
    )
    p.set_defaults(func=cmd_tensorrt)

    p = sub.add_parser("compare", help="build design variants (cached, not installed) and tabulate them")
    p.add_argument("--only", action="append", help="substring of a variant name to run (repeatable)")
    p.add_argument("--cached", action="append", metavar="KEY=LABEL", help="tabulate a cached build instead")
    p.add_argument("--output", help="folder for design_comparison.{json,md} (default: build_engines/reports)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sweep", help="train a one-pass variant and print its validation figures per epoch (no test)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="e.g. shared.method=full (repeatable)")
    p.add_argument("--output", help="JSON lines file to append to (default: <cache root>/sweep.jsonl)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "speed-twin", help="a latency twin of the previous default build (reports/baseline.json) for the benchmarks"
    )
    p.set_defaults(func=cmd_speed_twin)

    p = sub.add_parser("install-repo", help="install the cached build into the model repository")
    _add_config_flags(p)
    p.add_argument("--repository", default=str(MODEL_REPOSITORY_DIR))
    p.set_defaults(func=cmd_install)

    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.func(args)


if __name__ == "__main__":
    main()

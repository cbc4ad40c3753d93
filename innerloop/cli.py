"""The ``innerloop`` command: train, eval, bench, experiment, list.

Every user error (unknown names, bad values, shape or capability mismatches, corrupted
checkpoints, non-finite losses) is printed as one message with a hint and a non-zero exit
status; tracebacks are kept for real bugs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from innerloop.engine.errors import ConfigError, InnerloopError

TRAIN_FLAGS = {  # flag → (TrainConfig field, type, help)
    "--algo": ("algo", str, "algorithm: maml, fomaml, reptile, imaml, cnp, latent-np, attentive-np, protonet, "
             "matchingnet (see `innerloop list`)"),
    "--task": ("task", str, "task family: sinusoid, gp, clusters, linear, digits, omniglot, mini-imagenet, "
               "double-motif, spiking-sinusoid, spiking-clusters, events (spike trains, --backend snn)"),
    "--backend": ("backend", str, "backend: cpu (fused MLP passes; --backend-option fused=false: torch.func), "
                "torch (any torch device), triton (Triton kernels: CUDA GPU, or TRITON_INTERPRET=1), "
                "snn (spiking networks, three-factor rule), quantum (PennyLane circuits)"),
    "--dtype": ("dtype", str, "float32 (default) or float64"),
    "--shots": ("shots", int, "support points per task (per class for classification)"),
    "--queries": ("queries", int, "query points per task (per class for classification)"),
    "--train-tasks": ("train_tasks", int, "a finite meta-training set of this many tasks (default: endless)"),
    "--hidden": ("hidden", "widths", "hidden widths, comma separated (default: 40,40 for gradient methods, "
                 "128,128 for NPs, 64,64 for metric embeddings; '' for linear)"),
    "--activation": ("activation", str, "relu (default), tanh, gelu, silu"),
    "--meta-batch": ("meta_batch", int, "tasks per meta-iteration (default 25)"),
    "--inner-steps": ("inner_steps", int, "inner steps N (default: the algorithm's, 5 for MAML; gradient lens)"),
    "--inner-lr": ("inner_lr", float, "inner step size α (default: the algorithm's, 0.01 for MAML)"),
    "--outer-lr": ("outer_lr", float, "outer learning rate β (default 0.001)"),
    "--optimizer": ("optimizer", str, "outer optimizer: adam (default) or sgd"),
    "--iters": ("iters", int, "meta-iterations (default 1000)"),
    "--seed": ("seed", int, "seed of the task streams and initialization (default 0)"),
    "--checkpoint-every": ("checkpoint_every", int, "iterations between checkpoints (default 100)"),
    "--eval-every": ("eval_every", int, "iterations between held-out validations (default 100)"),
    "--eval-tasks": ("eval_tasks", int, "held-out validation tasks (default 100)"),
}
OPTION_FLAGS = {
    "--task-option": ("task_options", "task family option, e.g. --task-option phase_max=3.14159"),
    "--algo-option": ("algo_options", "algorithm option, e.g. --algo-option lam=10 or first_order=true"),
    "--backend-option": ("backend_options", "backend option, e.g. --backend-option capabilities=loss,loss_and_grad"),
    "--model-option": ("model_options", "spiking learner option, e.g. --model-option recurrent=true"),
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except InnerloopError as err:
        print(f"innerloop: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        where = getattr(args, "out", None) or getattr(args, "resume", None)
        hint = f"; continue with `innerloop train --resume {where}`" if where else ""
        print(f"innerloop: interrupted{hint}", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="innerloop", description="Meta-learning on pluggable backends.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,bench,experiment,list}")

    train = sub.add_parser("train", help="meta-train into a run directory",
                           description="Meta-train an algorithm on a task family with a backend.")
    for flag, (_, kind, text) in TRAIN_FLAGS.items():
        train.add_argument(flag, type=str if kind == "widths" else kind, default=None, help=text)
    for flag, (_, text) in OPTION_FLAGS.items():
        train.add_argument(flag, action="append", default=[], metavar="KEY=VALUE", help=text)
    train.add_argument("--config", help="JSON or TOML file of settings (flags given here override it)")
    where = train.add_mutually_exclusive_group()
    where.add_argument("--out", help="new run directory (default runs/ALGO-TASK-seedS)")
    where.add_argument("--resume", metavar="DIR", help="continue the run in DIR (only --iters may change)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_train)

    ev = sub.add_parser("eval", help="held-out evaluation of runs against baselines",
                        description="Held-out evaluation: gradient methods vs random-init and joint learning; "
                        "Neural Processes' NLL vs context size (with the exact GP on GP tasks); ProtoNet/"
                        "MatchingNet accuracy vs raw-input nearest neighbour. Several runs are also compared.")
    ev.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `innerloop train`")
    ev.add_argument("--tasks", type=int, default=None,
                    help="held-out tasks (default 500; 600 episodes for protonet/matchingnet)")
    ev.add_argument("--steps", default=None, help="inner-step counts, comma separated (default 0,1,N,2N)")
    ev.add_argument("--baseline-lr", type=float, default=None,
                    help="step size of the baselines' fine-tuning (default: the run's inner step size)")
    ev.add_argument("--contexts", default=None,
                    help="context sizes for Neural Processes, comma separated (default 2,4,8,12,16,20)")
    ev.add_argument("--out", default=None,
                    help="where several runs' comparison.json/png go (default: the first run's parent/comparison)")
    ev.add_argument("--joint-iters", type=int, default=None,
                    help="training iterations of the joint-learning baseline (default min(iters, 2000))")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(handler=_eval)

    from innerloop.engine.experiment_setup import SUMMARIES

    ex = sub.add_parser("experiment", help=f"multi-run experiments ({', '.join(SUMMARIES)})",
                        description="Reproducible multi-run experiments; each configuration is a run directory.")
    ex.add_argument("name", help="; ".join(f"{name}: {summary}" for name, summary in SUMMARIES.items()))
    ex.add_argument("--out", default=None, help="output directory (default runs/experiment-NAME)")
    ex.add_argument("--iters", type=int, default=None,
                    help="meta-iterations per run (default 2000; figure, quantum-bayes, power-control: 1000; "
                    "neuromorphic: 400; demodulation, demodulation-devices, viterbi-equalization: 3000; "
                    "online-demodulation: 3000 arriving devices; model-free-link: 4000 frames; meta-rl: 1000; "
                    "uabs-trajectory: 1500 arriving traffic patterns)")
    ex.add_argument("--tasks", type=int, default=None,
                    help="held-out tasks per run (default 500; figure, quantum-bayes, channel-prediction, "
                    "power-control, viterbi-equalization, meta-rl, uabs-trajectory: 200; neuromorphic, demodulation, "
                    "demodulation-devices, online-demodulation, model-free-link: 300; channel-coding: 100)")
    ex.add_argument("--algos", default=None,
                    help="comma-separated subset of algorithms, methods or (theory) parts (default: all)")
    ex.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    ex.add_argument("--jobs", type=int, default=1, help="runs in parallel worker processes (default 1)")
    ex.set_defaults(handler=_experiment)

    bench = sub.add_parser("bench", help="time primitives against baselines; JSON + PNG in bench/results",
                           description="Kernel benchmarking harness: each case (primitive, learner, B, K, N, dtype) "
                           "runs every implementation in this process — the torch.func idiom, a per-task loop and the "
                           "backends — with warm-up, median/IQR over repeats, peak memory, tasks/s and speed-ups.")
    for flag, (default, text) in BENCH_FLAGS.items():
        bench.add_argument(flag, default=None, help=f"{text} (default {default})")
    bench.add_argument("--first-order", action="store_true", help="first-order meta-gradients (FOMAML)")
    bench.add_argument("--shared-process", action="store_true",
                       help="run every case in this process (faster to start; a case's timings then depend on "
                            "the cases before it) instead of one fresh process per case")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(handler=_bench)

    ls = sub.add_parser("list", help="algorithms, tasks, backends and capabilities")
    ls.set_defaults(handler=_list)
    return parser


# -- train ------------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    from innerloop.engine.config import TrainConfig, load_config_file
    from innerloop.engine.trainer import Trainer

    given = _given_settings(args)
    if args.resume:
        extra = sorted(set(given) - {"iters"}) + (["--config"] if args.config else [])
        if extra:
            raise ConfigError(
                f"--resume continues a run with its saved settings; these cannot change: {', '.join(extra)}",
                "drop them, or start a new run with --out",
            )
        trainer = Trainer.resume(args.resume, iters=given.get("iters"), progress=not args.quiet)
    else:
        settings = load_config_file(args.config) if args.config else {}
        settings.update(given)
        config = TrainConfig.from_dict(settings).validate()
        out = args.out or f"runs/{config.algo}-{config.task}-seed{config.seed}"
        trainer = Trainer(config, out, progress=not args.quiet)
    result = trainer.run()
    val = f", held-out query loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    print(f"trained {result.iterations} iterations: final meta-loss {result.final_loss:.4f}{val}")
    print(f"run directory: {result.run_dir} (training_curve.png, adaptation.png, metrics.jsonl, checkpoint.pt)")
    return 0


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields set on the command line."""
    settings: dict[str, Any] = {}
    for flag, (field, kind, _) in TRAIN_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            settings[field] = _widths(value) if kind == "widths" else value
    for flag, (field, _) in OPTION_FLAGS.items():
        pairs = getattr(args, flag[2:].replace("-", "_"))
        if pairs:
            settings[field] = dict(_key_value(flag, p) for p in pairs)
    return settings


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise ConfigError(f"--hidden takes comma-separated integers, got '{text}'", "e.g. --hidden 40,40") from None


def _key_value(flag: str, text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"{flag} takes KEY=VALUE, got '{text}'", f"e.g. {flag} name=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # plain strings need no quotes
    return key.strip().replace("-", "_"), value


# -- eval -------------------------------------------------------------------------------------
def _eval(args: argparse.Namespace) -> int:
    from innerloop.engine.evaluation import compare_runs, evaluate_run, format_table

    steps, contexts = _integers("--steps", args.steps), _integers("--contexts", args.contexts)
    results = {}
    for run_dir in args.run_dirs:
        result = evaluate_run(run_dir, tasks=args.tasks, steps=steps, joint_iters=args.joint_iters,
                              progress=not args.quiet, contexts=contexts, baseline_lr=args.baseline_lr)
        print(f"== {run_dir}")
        print(format_table(result))
        for warning in result.get("warnings", []):
            print(f"innerloop: warning: {warning}", file=sys.stderr)
        print(f"wrote {Path(run_dir) / 'eval.json'} and eval.png")
        results[run_dir] = result
    if len(results) > 1:
        out = Path(args.out) if args.out else Path(args.run_dirs[0]).parent / "comparison"
        compare_runs(results, out)
        print(f"wrote {out / 'comparison.json'} and comparison.png")
    return 0


def _integers(flag: str, text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers, got '{text}'", f"e.g. {flag} 0,1,5,10") from None


# -- bench ------------------------------------------------------------------------------------
BENCH_FLAGS = {  # flag → (default shown in --help, help); values are parsed against BenchConfig's types
    "--primitives": ("grad,hvp,meta_gradient", "primitives to time, comma separated"),
    "--widths": ("1,40,40,1", "MLP widths in,hidden...,out"),
    "--activation": ("relu", "relu, tanh, gelu or silu"),
    "--loss": ("mse", "mse or cross_entropy"),
    "--batches": ("1,8,32,128,256", "task batch sizes B, comma separated"),
    "--shots": ("10", "support (and query) points per task K"),
    "--steps": ("5", "inner steps N of the meta-gradient"),
    "--inner-lr": ("0.01", "inner step size α"),
    "--dtype": ("float32", "float32 or float64"),
    "--device": ("cpu", "cpu or cuda"),
    "--implementations": ("torch.func,loop,cpu,torch", "what to time: torch.func, loop, cpu, torch, torch-fused, "
                          "triton, triton-cuda-graphs (the backend's cuda_graphs=True); NAME+graph "
                          "(e.g. torch.func+graph) replays NAME from a CUDA graph"),
    "--loop-max-batch": ("32", "the per-task loop runs only up to this B (it is ~100x slower)"),
    "--warmup": ("3", "untimed calls first"),
    "--repeats": ("15", "timed calls (median and quartiles)"),
    "--threads": ("1", "torch CPU threads"),
    "--memory-steps": ("1,2,4,8,16", "N values of the peak-memory sweep ('' to skip)"),
    "--memory-batch": ("256", "B of the peak-memory sweep"),
    "--seed": ("0", "seed of the inputs"),
    "--name": ("DEVICE-TIMESTAMP", "file name of the results (NAME.json, NAME.png)"),
    "--out": ("bench/results", "output directory"),
}


def _bench(args: argparse.Namespace) -> int:
    import dataclasses

    from innerloop.bench.harness import BenchConfig, run_bench, summary_table

    settings: dict[str, Any] = {"first_order": args.first_order, "isolate": not args.shared_process}
    fields = {f.name: f for f in dataclasses.fields(BenchConfig)}
    for flag in BENCH_FLAGS:
        key = flag[2:].replace("-", "_")
        raw = getattr(args, key)
        if raw is None:
            continue
        default = getattr(BenchConfig(), key)
        try:
            if isinstance(default, tuple):
                parts = [p.strip() for p in raw.split(",") if p.strip()]
                integers = fields[key].type.startswith("tuple[int")
                settings[key] = tuple(int(p) for p in parts) if integers else tuple(parts)
            elif isinstance(default, bool) or default is None or isinstance(default, str):
                settings[key] = raw
            else:
                settings[key] = type(default)(raw)
        except ValueError:
            example = f"e.g. {flag} {BENCH_FLAGS[flag][0]}"
            raise ConfigError(f"{flag} got '{raw}', which is not a valid value", example) from None
    results, path = run_bench(BenchConfig(**settings), progress=not args.quiet)
    print(summary_table(results))
    print(f"device: {results['machine']['device_name']}, {results['machine']['threads']} thread(s)")
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


# -- experiment -------------------------------------------------------------------------------
def _experiment(args: argparse.Namespace) -> int:
    from innerloop.engine.demodulation import demodulation_table
    from innerloop.engine.errors import unknown_name
    from innerloop.engine.experiments import EXPERIMENTS, OUTPUTS, table_markdown

    if args.name not in EXPERIMENTS:
        raise unknown_name("experiment", args.name, EXPERIMENTS)
    out = args.out or f"runs/experiment-{args.name}"
    algos = [a.strip() for a in args.algos.split(",") if a.strip()] if args.algos else None
    given = {k: v for k, v in (("iters", args.iters), ("tasks", args.tasks)) if v is not None}
    document = EXPERIMENTS[args.name](out, algorithms=algos, seed=args.seed, jobs=args.jobs, **given)
    if args.name == "algorithm-table":
        print(table_markdown(document))
    elif args.name == "neuromorphic":
        for variant, s in document["summary"].items():
            print(f"{variant:<26} accuracy after 5 steps {s['meta_init_accuracy_5_steps']:.3f} "
                  f"(random init {s['random_init_accuracy_5_steps']:.3f}, with 20 steps "
                  f"{s['random_init_accuracy_20_steps']:.3f}); 0 steps {s['meta_init_accuracy_0_steps']:.3f}")
    elif args.name == "quantum-bayes":
        for name, s in document["summary"]["after_inner_steps"].items():
            print(f"{name:<14} held-out MSE {s['mse']['mean']:.4f} ± {s['mse']['ci95']:.4f}   mass on the true "
                  f"weights {s['mass']['mean']:.4f} ± {s['mass']['ci95']:.4f}")
        for pair, d in document["summary"]["paired_differences"].items():
            print(f"{pair:<28} paired over the same tasks: ΔMSE {d['mse']['mean']:+.4f} ± {d['mse']['ci95']:.4f}, "
                  f"Δmass {d['mass']['mean']:+.4f} ± {d['mass']['ci95']:.4f}")
        print("checks:", json.dumps(document["summary"]["checks"]))
    elif args.name == "demodulation":
        print(demodulation_table(document))
        print("checks:", json.dumps(document["summary"]["checks"]))
    elif args.name == "channel-coding":
        summary = document["summary"]
        print("BLER after one iteration:", json.dumps(summary["bler_after_one_iteration"]))
        print("iterations to BLER <= 0.01:", json.dumps(summary["iterations_to_bler_0.01"]))
    elif args.name == "model-free-link":
        summary = document["summary"]
        for method, by_rho in summary["final_bler"].items():
            print(f"{method:<6} held-out BLER after {document['frames']} frames: "
                  + ", ".join(f"ρ={rho} {bler:.4f}" for rho, bler in by_rho.items()))
        print(f"conventional (BPSK + ML) {summary['conventional_bler']:.4f}; significantly below it: "
              + json.dumps(summary["significantly_below_conventional"]))
    elif args.name == "meta-rl":
        for method, row in {**document["rows"], "scratch": document["scratch"]}.items():
            print(f"{method:<9} held-out return after 0..{document['steps']} policy-gradient steps: "
                  + ", ".join(f"{r['return']['mean']:.2f}" for r in row))
        print(f"optimal return {document['optimal_return']['mean']:.2f}")
    elif args.name == "uabs-trajectory":
        for method, row in document["rows"].items():
            print(f"{method:<13} prequential return {row['prequential_mean']['mean']:.1f} (last quarter "
                  f"{row['last_quarter']['mean']:.1f}); held-out return after 0..{document['steps']} steps: "
                  + ", ".join(f"{r['return']['mean']:.1f}" for r in row["adaptation"]))
        print(f"random start, held-out return after 0..{document['steps']} steps: "
              + ", ".join(f"{r['return']['mean']:.1f}" for r in document["scratch"]["adaptation"])
              + f"; planned with the road known {document['planned']['held_out']['mean']:.1f}")
    elif args.name == "channel-prediction":
        for method, by_n in document["summary"].items():
            print(f"{method:<12} NMSE (dB) vs training windows: "
                  + ", ".join(f"{n}: {db:.1f}" for n, db in by_n.items()))
    elif args.name == "online-demodulation":
        for method, row in document["rows"].items():
            print(f"{method:<12} prequential SER {row['prequential_mean']['mean']:.3f} (last quarter "
                  f"{row['last_quarter']['mean']:.3f}); held-out SER {row['held_out'][-1]['mean']:.3f}")
        print(f"MMSE + ML    prequential SER {document['mmse_ml']['prequential_mean']['mean']:.3f}; held-out SER "
              f"{document['mmse_ml']['held_out']['mean']:.3f}")
    elif args.name == "power-control":
        for method, by_k in document["rows"].items():
            print(f"{method:<8} sum-rate (bit/slot) vs meta-training periods: "
                  + ", ".join(f"K={k} {v['mean']:.2f}" for k, v in by_k.items()))
        print("references: " + ", ".join(f"{name} {v['mean']:.2f}" for name, v in document["references"].items()))
    elif args.name == "theory":
        from innerloop.engine.theory_experiment import theory_summary

        print(theory_summary(document))
        print("wrote " + ", ".join(f"{Path(out) / part}.json/.png" for part in document))
        return 0
    elif args.name == "viterbi-equalization":
        from innerloop.engine.viterbi_equalization_report import ber_table

        print(ber_table(document))
        print("pilots where significantly below mmse-viterbi:",
              json.dumps(document["summary"]["pilots_where_significantly_below_mmse"]))
    elif args.name == "demodulation-devices":
        for method, by_count in document["summary"]["ser"].items():
            print(f"{method:<8} SER with {document['test_pilots']} pilots after K meta-training devices: "
                  + ", ".join(f"K={k} {ser:.3f}" for k, ser in by_count.items()))
    else:
        print(f"leader at the smallest N: {document['leader_smallest_data']}; at the smallest K: "
              f"{document['leader_smallest_tasks']} (BMAML leads in both: {document['bmaml_leads_when_small']})")
    print(f"wrote {Path(out) / OUTPUTS[args.name]}.json and .png")
    return 0


# -- list -------------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    from innerloop import backends
    from innerloop.engine import algorithms, tasks

    print("algorithms (lens; needs → options):")
    for name, cls in sorted(algorithms.ALGORITHMS.items()):
        options = _options(cls, ("model", "backend"))
        if issubclass(cls, algorithms.AmortizedAlgorithm):
            options = ", ".join(filter(None, [options, _options(cls.network, ("family", "hidden"))]))
        print(f"  {name:<12} {cls.summary}")
        print(f"  {'':<12} {cls.lens} lens; needs: {', '.join(sorted(cls.requires))}; options: {options}")
    print("\ntasks:")
    for name, cls in sorted(tasks.FAMILIES.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<13} {doc}")
        print(f"  {'':<13} options: {_options(cls, ())}")
    print("\nbackends:")
    for name in backends.names():
        info = backends.describe(name)
        state = "available" if info.available else f"unavailable: {info.reason}"
        print(f"  {name:<9} {info.description} [{state}]")
        optional = "".join(f"; {c} with --backend-option {o}" for c, o in sorted(info.optional.items()))
        offered = sorted(set(info.capabilities) - set(info.optional))
        print(f"  {'':<9} capabilities: {', '.join(offered)}{optional}")
    from innerloop.engine.experiment_setup import SUMMARIES

    print("\nexperiments (innerloop experiment NAME):")
    for name, summary in SUMMARIES.items():
        print(f"  {name:<20} {summary}")
    return 0


def _options(cls, skip: tuple[str, ...]) -> str:
    params = inspect.signature(cls).parameters.values()
    return ", ".join(f"{p.name}={p.default!r}" for p in params if p.name not in skip and p.default is not p.empty)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

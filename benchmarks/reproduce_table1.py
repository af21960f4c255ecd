"""A small-scale reproduction of the paper's Table 1 and convergence claim on Fashion-MNIST.

  python -m benchmarks.reproduce_table1 [--workdir=workdirs/table1] [--seeds=0,1,2]
      [--num_train_steps=600] [--num_evals=3] [--num_samples=400] [--stop_after_runs=0]
      [--report_only] [--rows=vanilla,ant_nash] [--worker=0/1]
      [--checkpoints_from=DIR --eval_overrides=sampling.method=ddpm,sampling.num_steps=100]

Every row trains the CPU-sized UNet below from the same initialisation and data order per seed
(config.seed), with one step budget and batch (B = 40: M = 1 microbatch, so k = 1, 2, 5, 8 all
divide it), and is evaluated (EMA, FID_FMNIST / precision / recall on --num_samples DDIM-25
samples of the same noise) at --num_evals evenly spaced checkpoints. Rows (the paper's Table 1,
docs/method.md):
  core:       vanilla (k = 1), stratified (k = 5, equal weights), ANT-UW, ANT-Nash-MTL,
              ANT-PCGrad (k = 5, log-SNR clusters), P2 (k = 1, gamma 1), Min-SNR-5 (k = 1);
  clustering: ANT-UW with timestep, raw-SNR and gradient (TAS of vanilla seed 0) clusters;
  k:          ANT-UW (log-SNR) with k = 2 and k = 8;
and, for round 2 (docs/results.md; not in the default --rows): diagnostics (ANT-UW with the
log-variances' rate 0.0025 and frozen after step 150, and both UW rates with their weights
normalized to sum 1 (mtl.normalize_weights: the ratios without the scale); the stratified batch
and ANT-Nash-MTL over uniform clusters; the stratified batch with clustering.width_weighting;
the scale rows: vanilla and ANT-Nash-MTL with the gradient rescaled to norm 1 before AdamW
(train.fixed_grad_norm), with AdamW's beta2 0.99 and with twice the learning rate)
and the aggregator screen (every other MTL method of the library as ANT, and continuous UW at
k = 1).
A re-evaluation (--checkpoints_from=<a sweep's workdir> and --eval_overrides) trains nothing and
evaluates that sweep's checkpoints with the overridden config into --workdir.
No row is tuned: all share every other field of configs/fashion_mnist.py (learning rate 5e-4,
50 warm-up steps, EMA 0.999, gradient clipping 1.0, dropout 0.1).
Outputs in --workdir: results.json (every evaluation, the settings, the summary), results.md
(the table), convergence.png, runs/<row>/seed_<s>/ (checkpoints, metrics.json, samples.png).
Resumable: rerun the same command after a kill or a session end; --stop_after_runs=n stops after
n runs that did work (to spread the sweep over sessions); progress goes to stdout. --worker=i/n
runs every n-th run from the i-th: n such processes share the workdir (round2 starts one per
CPU core, each pinned to its core: on this 2-core CPU two 1-core runs train 1.4x faster
together than one 2-core run at a time).
"""

from __future__ import annotations

import ast

import jax
from absl import app, flags

from configs import fashion_mnist
from diffmtl import mtl
from diffmtl.analysis import sweep, sweep_report
from diffmtl.errors import UserError, exit_on_user_error

FLAGS = flags.FLAGS

# The CPU scale (docs/results.md compares it with the paper's).
SCALE = {
    "model.base_channels": 16,
    "train.batch_size": 40,
    "train.num_microbatches": 1,
    "sampling.num_steps": 25,
    "sampling.batch_size": 100,
    "eval.batch_size": 400,
    "task_gradient_cosine_every_steps": 0,
}
# The TAS behind the gradient rows: a 50-point grid interpolated to T x T, 64 images.
TAS = (
    ("analysis.tas_num_timesteps", 50),
    ("analysis.tas_num_images", 64),
    ("analysis.tas_chunk_size", 2),
)
ANT = {"clustering.k": 5, "clustering.method": "log_snr"}
K1 = {"clustering.k": 1, "clustering.method": "uniform", "mtl.method": "equal"}


def ant(method: str, **fields) -> dict:
    """Overrides of an ANT row: k = 5 log-SNR clusters, `method` over them, then `fields`."""
    return {**ANT, "mtl.method": method, **fields}


def table1_rows() -> list[sweep.Row]:
    """The reproduction's rows; vanilla first (the baseline, and the gradient rows' TAS)."""
    row = sweep.Row
    return [
        row("vanilla", "vanilla (k = 1)", "core", K1),
        row("stratified", "stratified, equal weights", "core", ant("equal")),
        row("ant_uw", "ANT-UW", "core", ant("uw")),
        row("ant_nash", "ANT-Nash-MTL", "core", ant("nash_mtl")),
        row("ant_pcgrad", "ANT-PCGrad", "core", ant("pcgrad")),
        row("p2", "P2 (gamma 1)", "core", {**K1, "diffusion.loss_weighting": "p2"}),
        row("min_snr", "Min-SNR-5", "core", {**K1, "diffusion.loss_weighting": "min_snr"}),
        row("ant_uw_timestep", "ANT-UW, timestep clusters", "clustering",
            ant("uw", **{"clustering.method": "timestep"})),
        row("ant_uw_snr", "ANT-UW, raw-SNR clusters", "clustering",
            ant("uw", **{"clustering.method": "snr"})),
        row("ant_uw_gradient", "ANT-UW, gradient clusters", "clustering",
            ant("uw", **{"clustering.method": "gradient"})),
        row("ant_uw_k2", "ANT-UW, k = 2", "k", ant("uw", **{"clustering.k": 2})),
        row("ant_uw_k8", "ANT-UW, k = 8", "k", ant("uw", **{"clustering.k": 8})),
    ]  # fmt: skip


def diagnostic_rows() -> list[sweep.Row]:
    """Round 2's diagnostics of the table's UW and stratified rows (docs/results.md)."""
    uniform = {"clustering.method": "uniform"}
    row = sweep.Row
    return [
        row("ant_uw_lr0025", "ANT-UW, s rate 0.0025", "diagnostic",
            ant("uw", **{"mtl.uw.learning_rate": 0.0025})),
        row("ant_uw_frozen150", "ANT-UW, s frozen after 150", "diagnostic",
            ant("uw", **{"mtl.uw.freeze_after": 150})),
        row("stratified_uniform", "stratified, uniform clusters", "diagnostic",
            ant("equal", **uniform)),
        row("stratified_ww", "stratified, width-weighted", "diagnostic",
            ant("equal", **{"clustering.width_weighting": True})),
        row("ant_nash_uniform", "ANT-Nash-MTL, uniform clusters", "diagnostic",
            ant("nash_mtl", **uniform)),
        row("ant_uw_normalized", "ANT-UW, weights normalized", "diagnostic",
            ant("uw", **{"mtl.normalize_weights": True})),
        row("ant_uw_lr0025_normalized", "ANT-UW, s rate 0.0025, normalized", "diagnostic",
            ant("uw", **{"mtl.uw.learning_rate": 0.0025, "mtl.normalize_weights": True})),
        # The scale confound: AdamW fed a gradient of fixed norm, or tracking it faster.
        row("vanilla_fixed_norm", "vanilla, gradient norm fixed", "scale",
            {**K1, "train.fixed_grad_norm": 1.0}),
        row("ant_nash_fixed_norm", "ANT-Nash-MTL, gradient norm fixed", "scale",
            ant("nash_mtl", **{"train.fixed_grad_norm": 1.0}), control="vanilla_fixed_norm"),
        row("vanilla_b2_099", "vanilla, AdamW beta2 0.99", "scale", {**K1, "train.adam_b2": 0.99}),
        row("ant_nash_b2_099", "ANT-Nash-MTL, AdamW beta2 0.99", "scale",
            ant("nash_mtl", **{"train.adam_b2": 0.99}), control="vanilla_b2_099"),
        # Larger steps alone: the fixed norm made vanilla's steps larger over steps 100-300.
        *learning_rate_rows((1e-3, 2e-3, 4e-3)),
        # Round 3's grid (docs/results.md): vanilla past 4e-3, its best in 1d, and Nash between.
        *learning_rate_rows((2.8e-3, 5.6e-3, 8e-3)),
    ]  # fmt: skip


def learning_rate_rows(rates) -> list[sweep.Row]:
    """Vanilla and ANT-Nash-MTL at each learning rate, each Nash row paired with the vanilla
    row of its rate: the learning-rate curve of both (round 2's `lr` stage)."""
    rows = []
    for rate in rates:
        mantissa, exponent = f"{rate:.1e}".split("e")
        text = f"{mantissa.removesuffix('.0')}e{int(exponent)}"  # 1e-3, 2.8e-3
        name = "lr" + text.replace("-", "").replace(".", "p")  # lr1e3, lr2p8e3
        lr = {"train.learning_rate": rate}
        vanilla = sweep.Row(
            f"vanilla_{name}", f"vanilla, learning rate {text}", "scale", {**K1, **lr}
        )
        nash = ant("nash_mtl", **lr)
        label = f"ANT-Nash-MTL, learning rate {text}"
        rows += [vanilla, sweep.Row(f"ant_nash_{name}", label, "scale", nash, control=vanilla.name)]
    return rows


def aggregator_rows() -> list[sweep.Row]:
    """Round 2's screen: every MTL method of the library not in the table, as ANT (k = 5 log-SNR
    clusters), and continuous UW (EDM2's learned weighting over the log-SNR, k = 1)."""
    table = {"equal", "uw", "nash_mtl", "pcgrad", "continuous_uw"}
    rows = [
        sweep.Row(f"ant_{name}", f"ANT-{name}", "aggregator", ant(name))
        for name in mtl.METHODS
        if name not in table
    ]
    k1 = {**K1, "mtl.method": "continuous_uw"}
    return [sweep.Row("continuous_uw", "continuous UW (k = 1)", "aggregator", k1), *rows]


def parse_overrides(items: list[str]) -> tuple:
    """['sampling.method=ddpm', 'sampling.num_steps=100'] -> (('sampling.method', 'ddpm'),
    ('sampling.num_steps', 100)): values read as Python literals, else kept as strings."""
    pairs = []
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UserError(f"--eval_overrides entry {item!r} is not field=value")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        pairs.append((name, value))
    return tuple(pairs)


def parse_worker(text: str) -> tuple[int, int]:
    """'1/2' -> (1, 2)."""
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit()):
        raise UserError(f"--worker={text!r} is not i/n (e.g. 0/2)")
    return int(index), int(count)


def settings(checkpoints_from: str = "", eval_overrides: tuple = ()) -> sweep.Settings:
    """The flags' settings; a re-evaluation's from the flags or from the arguments."""
    return sweep.Settings(
        seeds=tuple(int(s) for s in FLAGS.seeds),
        num_train_steps=FLAGS.num_train_steps,
        eval_steps=sweep.eval_steps(FLAGS.num_train_steps, FLAGS.num_evals),
        num_samples=FLAGS.num_samples,
        final_num_samples=FLAGS.final_num_samples,
        tas_overrides=TAS,
        checkpoints_from=checkpoints_from or FLAGS.checkpoints_from,
        eval_overrides=eval_overrides or parse_overrides(FLAGS.eval_overrides),
    )


# ANT-Nash-MTL's average cluster weights at learning rate 2e-3 (docs/round2_long_weights.json:
# the mean over seeds 0-2 and the logged steps 100-1500 of the 1500-step runs; docs/results.md).
NASH_PROFILE = (0.5001, 1.0617, 1.4862, 1.3682, 1.7499)
TUNED = {"vanilla": 5.6e-3, "nash": 2e-3}  # each row's best rate at 600 steps, seeds 0-2


def round3_rows() -> list[sweep.Row]:
    """Round 3's controls at the tuned rates (docs/results.md): Min-SNR-5, Nash-MTL's average
    profile as fixed weights, Nash-MTL solving every step, vanilla without its gradient clip."""
    vanilla_lr = {"train.learning_rate": TUNED["vanilla"]}
    nash_lr = {"train.learning_rate": TUNED["nash"]}
    profile = {"mtl.fixed.weights": NASH_PROFILE, "mtl.fixed.normalize": True, **nash_lr}
    row = sweep.Row
    return [
        row("min_snr_tuned", "Min-SNR-5, learning rate 5.6e-3", "control",
            {**K1, "diffusion.loss_weighting": "min_snr", **vanilla_lr}),
        row("ant_fixed_nash_profile", "stratified, Nash-MTL's average weights fixed, 2e-3",
            "control", ant("fixed", **profile), control="ant_nash_lr2e3"),
        row("ant_nash_every1", "ANT-Nash-MTL solving every step, 2e-3", "control",
            ant("nash_mtl", **{"mtl.nash_mtl.update_every": 1}, **nash_lr),
            control="ant_nash_lr2e3"),
        row("vanilla_noclip_tuned", "vanilla without gradient clipping, 5.6e-3", "control",
            {**K1, "train.grad_clip_norm": 0.0, **vanilla_lr}, control="vanilla_lr5p6e3"),
    ]  # fmt: skip


def catalogue() -> list[sweep.Row]:
    """Every row of this module: the table's, the diagnostics, the aggregator screen and round
    3's controls."""
    return table1_rows() + diagnostic_rows() + aggregator_rows() + round3_rows()


def named(names) -> list[sweep.Row]:
    """The catalogue's rows of `names`, in that order (other scripts' row sets)."""
    known = {row.name: row for row in catalogue()}
    return [known[name] for name in names]


def select_rows(catalogue: list[sweep.Row], default: list[sweep.Row]) -> list[sweep.Row]:
    """--rows (names of `catalogue`, in that order) or `default`."""
    if not FLAGS.rows:
        return default
    known = {row.name: row for row in catalogue}
    unknown = sorted(set(FLAGS.rows) - set(known))
    if unknown:
        raise UserError(f"--rows has unknown rows {unknown}; use {list(known)}")
    return [known[name] for name in FLAGS.rows]


def run_table(base, rows: list[sweep.Row], workdir: str, run_settings: sweep.Settings) -> str:
    """Runs (or, with --report_only, reports) one sweep; returns its table and where it is."""
    if not FLAGS.report_only:
        worker = parse_worker(FLAGS.worker)
        sweep.run_sweep(base, rows, run_settings, workdir, FLAGS.stop_after_runs, worker=worker)
    return report_table(rows, workdir, run_settings)


def report_table(rows: list[sweep.Row], workdir: str, run_settings: sweep.Settings) -> str:
    """Writes the report of what `workdir`'s results.json holds; returns its table and where."""
    table = sweep_report.write_report(workdir, rows, sweep.Results(workdir, run_settings))
    return f"{table}\n\nresults.json, results.md and convergence.png in {workdir}"


def reproduce(workdir: str) -> str:
    rows = select_rows(catalogue(), table1_rows())
    return run_table(sweep.override(fashion_mnist.get_config(), SCALE), rows, workdir, settings())


def use_compile_cache() -> None:
    """Every run of a row compiles the same programs: compile them once for the whole sweep."""
    jax.config.update("jax_compilation_cache_dir", FLAGS.compile_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv):
    del argv
    use_compile_cache()
    print(exit_on_user_error(reproduce, FLAGS.workdir))


def define_flags(workdir: str = "workdirs/table1", num_samples: int = 400) -> None:
    """The command-line flags (defined only when run as a script, never on import)."""
    flags.DEFINE_string("workdir", workdir, "Sweep directory (results.json, runs/).")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; each row is trained once per seed.")
    flags.DEFINE_integer("num_train_steps", 600, "Step budget of every run.")
    flags.DEFINE_integer(
        "num_evals", 3, "Evenly spaced evaluated checkpoints, the last at the end."
    )
    flags.DEFINE_integer("num_samples", num_samples, "Samples per FID / precision / recall.")
    flags.DEFINE_integer(
        "final_num_samples", 0, "Samples of the last step's FID (0: --num_samples; round 3: 2000)."
    )
    flags.DEFINE_integer("stop_after_runs", 0, "Stop after this many runs did work (0: finish).")
    flags.DEFINE_string("worker", "0/1", "i/n: run every n-th run from the i-th (module doc).")
    flags.DEFINE_bool("report_only", False, "Only (re)write the report of what results.json holds.")
    flags.DEFINE_list(
        "rows",
        [],
        "These rows in this order, the first the baseline (e.g. vanilla,ant_nash); "
        "default: the table's (not the diagnostics).",
    )
    flags.DEFINE_string(
        "checkpoints_from", "", "Re-evaluate this sweep workdir's runs (train nothing)."
    )
    flags.DEFINE_list(
        "eval_overrides",
        [],
        "field=value pairs of a re-evaluation's config, e.g. "
        "sampling.method=ddpm,sampling.num_steps=100 (with --checkpoints_from).",
    )
    flags.DEFINE_string(
        "compile_cache", "workdirs/jax_cache", "Persistent XLA cache shared by the sweep's runs."
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)

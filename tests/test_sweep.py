"""The sweep behind benchmarks/reproduce_table1.py: settings checks, statistics, and a tiny
two-row sweep stopped after one run, damaged as a kill mid-evaluation would leave it, resumed."""

import dataclasses
import fcntl
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy import stats

from benchmarks import reproduce_table1
from conftest import make_tiny_config
from diffmtl.analysis import sweep, sweep_report
from diffmtl.errors import UserError
from diffmtl.training import events, experiment

VANILLA = sweep.Row("vanilla", "vanilla", "core", {"clustering.k": 1, "mtl.method": "equal"})
ANT_UW = sweep.Row(
    "ant_uw",
    "ANT-UW",
    "core",
    {"clustering.k": 2, "clustering.method": "log_snr", "mtl.method": "uw"},
)
# The tiny config's own programs (k = 5; cluster bounds are state, not code): a warm compile
# cache (other tests) makes the sweep test below fast.
STRATIFIED = sweep.Row("stratified", "stratified", "core", {"clustering.method": "log_snr"})
UW_TIMESTEP = sweep.Row(
    "ant_uw", "ANT-UW", "core", {"clustering.method": "timestep", "mtl.method": "uw"}
)


def _settings(**fields):
    defaults = dict(seeds=(0,), num_train_steps=4, eval_steps=(2, 4), num_samples=8)
    return sweep.Settings(**{**defaults, **fields})


def test_eval_steps_are_evenly_spaced_and_must_divide_the_budget():
    assert sweep.eval_steps(600, 3) == (200, 400, 600)
    assert sweep.eval_steps(5, 1) == (5,)
    with pytest.raises(UserError, match="must divide"):
        sweep.eval_steps(10, 3)


@pytest.mark.parametrize(
    "rows, settings, message",
    [
        ([VANILLA, VANILLA], _settings(), "distinct names"),
        (
            [sweep.Row("g", "g", "core", {"clustering.method": "gradient"}), VANILLA],
            _settings(),
            "list it before them",
        ),
        ([VANILLA], _settings(eval_steps=(2, 3)), "must ascend and end at 4"),
        ([VANILLA], _settings(eval_steps=(3, 4)), "multiples of the first"),
    ],
)
def test_sweeps_that_cannot_run_are_refused_before_training(rows, settings, message):
    with pytest.raises(UserError, match=message):
        sweep.check_rows(rows, settings)


def test_overrides_must_name_config_fields():
    config = sweep.override(make_tiny_config(), {"clustering.k": 3})
    assert config.clustering.k == 3 and make_tiny_config().clustering.k != 3
    for name in ("clustering.kk", "clusterin.k", "seed.k"):
        with pytest.raises(UserError, match=f"sweep override {name} does not exist"):
            sweep.override(config, {name: 3})
    with pytest.raises(UserError, match="mtl.pcgrad_seed was renamed to mtl.pcgrad.seed"):
        sweep.override(config, {"mtl.pcgrad_seed": 1})


def test_the_table_rows_are_the_issues_and_vanilla_gives_the_gradient_rows_their_tas():
    rows = reproduce_table1.table1_rows()
    names = [row.name for row in rows]
    assert names[0] == "vanilla"
    assert {"stratified", "ant_uw", "ant_nash", "ant_pcgrad", "p2", "min_snr"} <= set(names)
    methods = {row.overrides.get("clustering.method") for row in rows if row.group == "clustering"}
    assert methods == {"timestep", "snr", "gradient"}
    assert sorted(row.overrides["clustering.k"] for row in rows if row.group == "k") == [2, 8]
    sweep.check_rows(rows, _settings())


def test_rows_of_one_seed_start_from_the_same_parameters(tmp_path):
    base, settings = make_tiny_config(), _settings()
    sweep.ensure_reference(base, str(tmp_path))
    params = []
    for row in (VANILLA, ANT_UW):
        config = sweep.run_config(base, row, 0, settings, str(tmp_path), [VANILLA, ANT_UW])
        params.append(experiment.initial_state(config, experiment.build_experiment(config)).params)
    jax.tree.map(np.testing.assert_array_equal, *params)


def test_steps_to_reach_interpolates_linearly_between_evaluations():
    steps = [100, 200, 300]
    assert sweep_report.steps_to_reach(steps, [50.0, 30.0, 20.0], 40.0) == 150.0
    assert sweep_report.steps_to_reach(steps, [50.0, 30.0, 20.0], 60.0) == 100.0
    assert sweep_report.steps_to_reach(steps, [50.0, 30.0, 20.0], 10.0) is None


def _fake_results(fids: dict) -> dict:
    """results.json data with FIDs {row: [[per step] per seed]}; precision/recall derived."""
    runs = {}
    for row, per_seed in fids.items():
        for seed, curve in enumerate(per_seed):
            evals = {
                str(step): {"fid": f, "precision": f / 100, "recall": f / 200}
                for step, f in zip((2, 4), curve, strict=True)
            }
            runs[f"{row}/seed_{seed}"] = {"row": row, "seed": seed, "evals": evals}
    return {"settings": {"eval_steps": [2, 4], "num_train_steps": 4}, "runs": runs}


def test_the_summary_is_mean_and_sample_std_with_paired_differences():
    vanilla = [[80.0, 60.0], [90.0, 64.0], [70.0, 62.0]]
    uw = [[60.0, 50.0], [85.0, 66.0], [65.0, 55.0]]
    data = _fake_results({"vanilla": vanilla, "ant_uw": uw})
    data["runs"]["ant_uw/seed_3"] = {"row": "ant_uw", "seed": 3, "evals": {"2": {"fid": 1.0}}}
    final_only = {"4": {"fid": 1.0, "precision": 1.0, "recall": 1.0}}  # stopped mid-evaluation
    data["runs"]["ant_uw/seed_4"] = {"row": "ant_uw", "seed": 4, "evals": final_only}
    summary = sweep_report.summarize(data, [VANILLA, ANT_UW])
    uw_final, vanilla_final = np.array(uw)[:, 1], np.array(vanilla)[:, 1]
    entry = summary["ant_uw"]
    assert entry["seeds"] == [0, 1, 2]  # seed 3 never reached the final step, 4 lacks step 2
    np.testing.assert_allclose(entry["final"]["fid"], [uw_final.mean(), uw_final.std(ddof=1)])
    deltas = uw_final - vanilla_final
    np.testing.assert_allclose(entry["paired_fid_delta"], [deltas.mean(), deltas.std(ddof=1)])
    assert entry["paired_wins"] == [2, 3]
    half = 4.302652729911275 * deltas.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 df)
    np.testing.assert_allclose(entry["paired_fid_ci"], [deltas.mean() - half, deltas.mean() + half])
    assert entry["paired_fid_p"] == pytest.approx(stats.ttest_rel(uw_final, vanilla_final).pvalue)
    np.testing.assert_allclose(entry["fid_curve"], np.array(uw).mean(0))
    target = vanilla_final.mean()  # 62: between uw's mean 70 at step 2 and 57 at step 4
    expected = 2 + 2 * (np.array(uw).mean(0)[0] - target) / (np.array(uw).mean(0)[0] - 57.0)
    np.testing.assert_allclose(entry["steps_to_baseline_final_fid"], expected)
    assert "paired_fid_delta" not in summary["vanilla"]
    table = sweep_report.markdown_table(summary, 4).splitlines()
    assert len(table) == 2 + 2 and table[3].startswith("| ANT-UW | 3 | 57.00 ± ")
    per_seed = sweep_report.per_seed_table(data, summary).splitlines()
    assert per_seed[0] == "| row | FID@4 s0 / s1 / s2 | dFID@2 | dFID@4 |"
    assert (
        per_seed[3]
        == "| ANT-UW | 50.00 / 66.00 / 55.00 | -20.0 / -5.0 / -5.0 | -10.0 / +2.0 / -7.0 |"
    )


def test_the_report_lists_each_runs_hosts_and_the_runs_of_older_sweeps_as_not_recorded():
    runs = {
        "vanilla/seed_0": {"row": "vanilla", "seed": 0, "hosts": ["cpu: A"]},
        "ant_uw/seed_0": {"row": "ant_uw", "seed": 0, "hosts": ["cpu: A", "cpu: B"]},
        "vanilla/seed_1": {"row": "vanilla", "seed": 1},
    }
    assert sweep_report.hosts_lines({"runs": runs}).splitlines() == [
        "- cpu: A: vanilla s0, ant_uw s0",
        "- cpu: B: ant_uw s0",
        "- not recorded: vanilla s1",
    ]
    del runs["vanilla/seed_0"]["hosts"], runs["ant_uw/seed_0"]["hosts"]
    assert sweep_report.hosts_lines({"runs": runs}) == ""


def test_matched_pairs_compare_a_row_with_its_control_on_their_common_seeds():
    """ant_uw against its control ant_k2 on seeds 0 and 1 (the control lacks seed 2): the
    differences by hand; rows without a control, or whose control never finished, add nothing."""
    data = _fake_results({
        "vanilla": [[80.0, 60.0]] * 3,
        "ant_k2": [[70.0, 50.0], [72.0, 54.0]],
        "ant_uw": [[60.0, 52.0], [75.0, 50.0], [1.0, 1.0]],
    })  # fmt: skip
    control = sweep.Row("ant_k2", "k2", "core", {})
    rows = [VANILLA, control, dataclasses.replace(ANT_UW, control="ant_k2")]
    lines = sweep_report.matched_pairs_table(data, rows).splitlines()
    assert lines[0] == (
        "| row | against | dFID@2 | dFID@4 | dFID@4 95% CI, p | wins | dFID@4 per seed |"
    )
    # step 2: -10, +3 (mean -3.5, sd 9.19); step 4: +2, -4 (mean -1, sd 4.24; t(0.975, 1) =
    # 12.706: half-width 12.706 x 4.24 / sqrt(2) = 38.1; p of t = -1 / 3 on 1 df = 0.795)
    assert lines[2] == (
        "| ANT-UW | k2 | -3.5 ± 9.2 | -1.0 ± 4.2 | [-39.1, +37.1], p = 0.8 | 1/2 | +2.0 / -4.0 |"
    )
    assert len(lines) == 3
    orphan = [VANILLA, dataclasses.replace(ANT_UW, control="missing")]
    assert sweep_report.matched_pairs_table(data, orphan) == ""


def test_results_of_other_settings_are_refused(tmp_path):
    sweep.Results(str(tmp_path), _settings()).save()
    sweep.Results(str(tmp_path), _settings())  # the same settings resume
    with pytest.raises(UserError, match="other settings"):
        sweep.Results(str(tmp_path), _settings(num_samples=16))


def test_results_json_without_the_newer_settings_fields_resumes(tmp_path):
    stored = json.loads(json.dumps(dataclasses.asdict(_settings())))
    del stored["checkpoints_from"], stored["eval_overrides"]  # as an older version wrote it
    (tmp_path / "results.json").write_text(json.dumps({"settings": stored, "runs": {}}))
    sweep.Results(str(tmp_path), _settings())
    with pytest.raises(UserError, match="other settings"):
        sweep.Results(str(tmp_path), _settings(checkpoints_from="elsewhere"))


def test_worker_plans_partition_the_seed_major_plan():
    rows, seeds = [VANILLA, ANT_UW, sweep.Row("c", "c", "core", {})], (4, 7)
    plans = [sweep.worker_plan(rows, seeds, (i, 3)) for i in range(3)]
    assert [len(plan) for plan in plans] == [2, 2, 2]
    merged = sorted((run for plan in plans for run in plan), key=lambda run: run[0])
    assert [(seed, row.name) for _, seed, row in merged] == [
        (seed, row.name) for seed in seeds for row in rows
    ]
    assert [index for index, _, _ in merged] == list(range(6))
    assert sweep.worker_plan(rows, seeds) == merged


def test_sweep_workers_sharing_a_workdir_keep_each_others_runs(tmp_path):
    first, second = (sweep.Results(str(tmp_path), _settings()) for _ in range(2))
    first.run("vanilla/seed_0")["evals"]["2"] = {"fid": 3.0}
    first.save()
    second.run("ant_uw/seed_0")["evals"]["2"] = {"fid": 2.0}  # loaded before first saved
    second.save()
    first.run("vanilla/seed_0")["evals"]["4"] = {"fid": 1.0}
    first.save()
    on_disk = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert on_disk == {
        "vanilla/seed_0": {"evals": {"2": {"fid": 3.0}, "4": {"fid": 1.0}}},
        "ant_uw/seed_0": {"evals": {"2": {"fid": 2.0}}},
    }
    with pytest.raises(UserError, match="worker 2/2 must be i/n"):
        sweep.run_sweep(make_tiny_config(), [VANILLA], _settings(), str(tmp_path), worker=(2, 2))
    with pytest.raises(UserError, match="worker 0/0 must be i/n"):
        sweep.worker_plan([VANILLA], (0,), (0, 0))
    gradient = sweep.Row("g", "g", "core", {"clustering.method": "gradient"})
    with pytest.raises(UserError, match="need one worker"):
        sweep.run_sweep(make_tiny_config(), [VANILLA, gradient], _settings(), "", worker=(0, 2))
    assert sweep.host(cores=1).endswith(f", 1 of {os.cpu_count()} cores") == (os.cpu_count() > 1)


def test_a_reevaluation_of_untrained_runs_is_refused_before_evaluating(tmp_path):
    settings = _settings(checkpoints_from=str(tmp_path / "none"), eval_overrides=(("seed", 1),))
    with pytest.raises(UserError, match="has no checkpoints of steps \\[2, 4\\]: finish"):
        sweep.run_sweep(make_tiny_config(), [VANILLA], settings, str(tmp_path / "re"))
    # Passing over untrained runs instead (Table 2's unguided evaluation, run by run).
    skipped = sweep.run_sweep(
        make_tiny_config(), [VANILLA], settings, str(tmp_path / "re"), skip_untrained=True
    )
    assert skipped.data["runs"] == {}
    with pytest.raises(UserError, match="set checkpoints_from"):
        sweep.check_rows([VANILLA], _settings(eval_overrides=(("seed", 1),)))


def test_eval_override_flags_are_parsed_as_literals():
    pairs = reproduce_table1.parse_overrides(["sampling.method=ddpm", "sampling.num_steps=100"])
    assert pairs == (("sampling.method", "ddpm"), ("sampling.num_steps", 100))
    with pytest.raises(UserError, match="not field=value"):
        reproduce_table1.parse_overrides(["sampling.method"])
    names = [row.name for row in reproduce_table1.diagnostic_rows()]
    assert not set(names) & {row.name for row in reproduce_table1.table1_rows()}


def test_the_command_parses_its_flags_and_reports_what_results_json_holds(tmp_path):
    settings = _settings(seeds=(0, 1), tas_overrides=reproduce_table1.TAS)
    rows = reproduce_table1.table1_rows()
    data = _fake_results(
        {row.name: [[80.0, 60.0 + i], [82.0, 62.0 + i]] for i, row in enumerate(rows)}
    )
    data["settings"] = json.loads(json.dumps(dataclasses.asdict(settings)))
    (tmp_path / "results.json").write_text(json.dumps(data))
    flags = ["--seeds=0,1", "--num_train_steps=4", "--num_evals=2", "--num_samples=8"]
    cmd = [sys.executable, "-m", "benchmarks.reproduce_table1", "--report_only", *flags]
    cmd += [f"--workdir={tmp_path}", f"--compile_cache={tmp_path / 'cache'}"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "results.md").read_text().split("\n\n")[0].splitlines()
    assert len(table) == 2 + len(rows) and table[-1].startswith("| ANT-UW, k = 8 | 2 | 72.00 ± ")
    assert (tmp_path / "convergence.png").exists()


def test_a_report_of_no_finished_run_is_one_clear_error_and_writes_nothing(tmp_path):
    rows = reproduce_table1.table1_rows()
    with pytest.raises(UserError, match="no finished run of the rows"):
        sweep_report.write_report(str(tmp_path), rows, sweep.Results(str(tmp_path), _settings()))
    assert not list(tmp_path.iterdir())
    # A results.json whose finished runs are of other rows: the same error, the file untouched.
    data = _fake_results({"vanilla": [[80.0, 60.0]]})
    data["settings"] = json.loads(json.dumps(dataclasses.asdict(_settings())))
    (tmp_path / "results.json").write_text(json.dumps(data))
    before = (tmp_path / "results.json").read_text()
    others = [row for row in rows if row.name != "vanilla"]
    with pytest.raises(UserError, match="no finished run of the rows"):
        sweep_report.write_report(str(tmp_path), others, sweep.Results(str(tmp_path), _settings()))
    assert (tmp_path / "results.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.slow  # 75-115 s here (two runs' compiles); the command's test above stays fast.
def test_a_stopped_and_damaged_sweep_resumes_to_the_same_results(tmp_path):
    base = sweep.override(make_tiny_config(), {"task_gradient_cosine_every_steps": 0})
    settings, rows = _settings(), [STRATIFIED, UW_TIMESTEP]
    workdir = str(tmp_path)
    first = sweep.run_sweep(base, rows, settings, workdir, stop_after_runs=1)
    assert list(first.data["runs"]) == ["stratified/seed_0"]
    stratified = first.data["runs"]["stratified/seed_0"]
    assert set(stratified["evals"]) == {"2", "4"} and len(stratified["boundaries"]) == 5
    assert stratified["hosts"] == [sweep.host()] and sweep.host().startswith("cpu")
    run_dir = tmp_path / "runs" / "stratified" / "seed_0"
    saved = (run_dir / "checkpoints" / "4").stat().st_mtime_ns
    # A kill before the entries were written: both lost (the final one retrains nothing).
    stored = json.loads((tmp_path / "results.json").read_text())
    expected = stored["runs"]["stratified/seed_0"].pop("evals")
    stored["runs"]["stratified/seed_0"]["evals"] = {}
    (tmp_path / "results.json").write_text(json.dumps(stored))

    # Two workers, one after the other: the second keeps the first's run in results.json.
    sweep.run_sweep(base, rows, settings, workdir, worker=(1, 2))  # ant_uw only
    assert not sweep.Results(workdir, settings).finished("stratified/seed_0")
    resumed = sweep.run_sweep(base, rows, settings, workdir, worker=(0, 2))
    evals = resumed.data["runs"]["stratified/seed_0"]["evals"]
    for step in ("2", "4"):
        for name, value in expected[step].items():
            np.testing.assert_allclose(evals[step][name], value, rtol=1e-5, err_msg=step + name)
    assert (run_dir / "checkpoints" / "4").stat().st_mtime_ns == saved  # not trained again
    assert resumed.data["runs"]["stratified/seed_0"]["hosts"] == [sweep.host()]  # not twice
    uw = resumed.data["runs"]["ant_uw/seed_0"]
    assert set(uw["evals"]) == {"2", "4"} and uw["boundaries"] != stratified["boundaries"]
    assert evals["2"]["fid"] != evals["4"]["fid"]

    table = sweep_report.write_report(workdir, rows, resumed)
    assert len(table.splitlines()) == 4 and (tmp_path / "convergence.png").exists()
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert set(on_disk["summary"]) == {"stratified", "ant_uw"}
    assert on_disk["summary"]["ant_uw"]["paired_wins"][1] == 1
    report = (tmp_path / "results.md").read_text()
    assert f"- {sweep.host()}: stratified s0, ant_uw s0\n" in report
    assert (
        report.startswith(table + "\n\nPer seed:") and "| ANT-UW | " in report.split("Per seed:")[1]
    )

    # A re-evaluation of those checkpoints trains nothing: with no overrides it reproduces the
    # sweep's own evaluations, with ancestral sampling it changes them.
    for name, overrides in (("same", ()), ("ancestral", (("sampling.method", "ddpm"),))):
        again = _settings(checkpoints_from=workdir, eval_overrides=overrides)
        redone = sweep.run_sweep(base, rows, again, str(tmp_path / name)).data["runs"]
        assert redone.keys() == on_disk["runs"].keys()
        for run, record in on_disk["runs"].items():
            assert redone[run]["boundaries"] == record["boundaries"]
            fids = [(redone[run]["evals"][s]["fid"], record["evals"][s]["fid"]) for s in "24"]
            for new, old in fids:
                assert (new == pytest.approx(old, rel=1e-5)) == (name == "same"), (run, name)
    assert (run_dir / "checkpoints" / "4").stat().st_mtime_ns == saved


def test_the_accelerator_sweep_is_valid_at_its_scale_and_its_estimate_adds_up():
    from benchmarks import reproduce_accelerator as accelerator
    from diffmtl import config_validation

    for row in reproduce_table1.named(accelerator.CORE):
        config_validation.validate(sweep.override(accelerator.base_config(), row.overrides), 8)
    timings = [
        {"row": "vanilla", "step_s": 0.02, "sample_batch_s": 3.0},
        {"row": "ant_nash", "step_s": 0.03, "sample_batch_s": 3.0},
    ]
    # seeds x (steps x step_s + evals x ceil(samples / 1000) x batch_s), in hours
    expected = 2 * (1000 * 0.02 + 2 * 3 * 3.0 + 1000 * 0.03 + 2 * 3 * 3.0) / 3600
    hours = accelerator.estimate(timings, ("vanilla", "ant_nash"), 1000, 2, 2500, 2)
    assert hours == round(expected, 2)
    for row in reproduce_table1.named(accelerator.PILOT):  # the pilot's rows, at both scales
        for scale in ("accelerator", "cpu"):
            config = sweep.override(accelerator.base_config(scale), row.overrides)
            config_validation.validate(config, 1)
    # The pilot's steps: (budget - 2 uncached compiles of 5 s) / (2 x 0.02 + 2 x 0.03) s per
    # step of the four runs = (100 - 10) / 0.1 = 900, a multiple of 50.
    timed = [dict(timings[0], compile_s=5.0), dict(timings[1], compile_s=4.0)]
    assert accelerator.pilot_steps(timed, accelerator.PILOT, 100.0, 50) == 900
    assert accelerator.pilot_steps(timed, accelerator.PILOT, 10.0, 50) == 50  # at least one round


def test_table2_retrains_only_runs_whose_checkpoints_were_lost_before_their_unguided_eval(
    tmp_path,
):
    from benchmarks import reproduce_table2

    settings, rows, workdir = _settings(seeds=(0, 1)), [VANILLA, ANT_UW], str(tmp_path)
    unguided_settings = _settings(seeds=(0, 1), checkpoints_from=workdir)
    guided = sweep.Results(workdir, settings)
    unguided = sweep.Results(str(tmp_path / "unguided"), unguided_settings)
    done = {"2": {"fid": 1.0}, "4": {"fid": 1.0}}
    for name in ("vanilla/seed_0", "vanilla/seed_1", "ant_uw/seed_0"):
        guided.run(name)["evals"] = dict(done)
    guided.run("ant_uw/seed_1")["evals"] = {"2": {"fid": 1.0}}  # in progress: not touched
    unguided.run("vanilla/seed_0")["evals"] = dict(done)
    for step in (2, 4):  # vanilla seed 1 still has its checkpoints; ant_uw seed 0 lost them
        (tmp_path / "runs" / "vanilla" / "seed_1" / "checkpoints" / str(step)).mkdir(parents=True)
    guided.save()
    # Of two workers, the first owns vanilla's runs, the second ant_uw's (plan: seed-major).
    assert reproduce_table2.forget_lost_runs(guided, unguided, rows, workdir, (0, 2)) == []
    lost = reproduce_table2.forget_lost_runs(guided, unguided, rows, workdir, (1, 2))
    assert lost == ["ant_uw/seed_0"]
    on_disk = sweep.Results(workdir, settings).data["runs"]
    assert sorted(on_disk) == ["ant_uw/seed_1", "vanilla/seed_0", "vanilla/seed_1"]
    assert reproduce_table2.forget_lost_runs(guided, unguided, rows, workdir) == []


def test_table2_evaluates_each_run_unguided_as_soon_as_it_is_trained(tmp_path, monkeypatch):
    from benchmarks import reproduce_table2

    settings, rows = _settings(seeds=(0, 1)), [VANILLA, ANT_UW]
    unguided_settings = _settings(seeds=(0, 1), checkpoints_from=str(tmp_path))
    trained, calls = [], []

    class Trained:
        def finished(self, name):
            return name in trained

    def fake_sweep(
        base, rows, run_settings, workdir, stop_after_runs=0, skip_untrained=False, worker=(0, 1)
    ):
        if run_settings.checkpoints_from:
            calls.append(("unguided", skip_untrained, worker, len(trained)))
        else:
            assert stop_after_runs == 1
            todo = [sweep.run_name(r, s) for s in run_settings.seeds for r in rows]
            todo = todo[worker[0] :: worker[1]]
            trained.extend([name for name in todo if name not in trained][:1])
            calls.append(("guided", len(trained)))
        return Trained()

    monkeypatch.setattr(reproduce_table2.sweep, "run_sweep", fake_sweep)
    train = reproduce_table2.train_and_evaluate
    train(None, rows, settings, unguided_settings, str(tmp_path), stop_after_runs=2)
    one = (0, 1)
    assert calls == [
        ("guided", 1),
        ("unguided", True, one, 1),
        ("guided", 2),
        ("unguided", True, one, 2),
    ]
    calls.clear()
    train(None, rows, settings, unguided_settings, str(tmp_path))  # to the end
    assert [c[-1] for c in calls] == [3, 3, 4, 4] and trained[-1] == "ant_uw/seed_1"
    # A second worker trains and evaluates its own runs only, and stops when they are done.
    trained.clear(), calls.clear()
    train(None, rows, settings, unguided_settings, str(tmp_path), worker=(1, 2))
    assert trained == ["ant_uw/seed_0", "ant_uw/seed_1"]
    assert calls[1::2] == [("unguided", True, (1, 2), 1), ("unguided", True, (1, 2), 2)]


def test_table2_workers_build_the_shared_latent_cache_under_the_workdir_lock(tmp_path, monkeypatch):
    from benchmarks import reproduce_table2

    held = []

    def encode(config, splits):  # The lock is held: a second flock from another file fails.
        with open(tmp_path / "table2" / ".lock") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append((config, splits))

    monkeypatch.setattr(reproduce_table2.encode_latents, "encode", encode)
    base = object()
    reproduce_table2.build_latent_cache(base, str(tmp_path / "table2"))
    assert held == [(base, [])]
    with open(tmp_path / "table2" / ".lock") as f:  # and released after
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_round_two_rows_are_valid_configs_of_their_bases():
    from benchmarks import reproduce_table2
    from configs import fashion_mnist_latent_dit
    from diffmtl import config_validation, mtl

    screen = reproduce_table1.aggregator_rows()
    methods = {row.overrides["mtl.method"] for row in screen}
    assert methods == set(mtl.METHODS) - {"equal", "uw", "nash_mtl", "pcgrad"}
    base = sweep.override(make_tiny_config(), {"task_gradient_cosine_every_steps": 0})
    for row in screen + reproduce_table1.diagnostic_rows():
        config_validation.validate(sweep.override(base, row.overrides), 4, check_files=False)
    latent = fashion_mnist_latent_dit.get_config()
    rows = reproduce_table2.catalogue()
    assert [row.name for row in reproduce_table2.table2_rows()] == [
        "vanilla", "min_snr", "ant_uw", "ant_nash"
    ]  # fmt: skip
    assert rows[:4] == reproduce_table2.table2_rows()
    for row in rows:
        config_validation.validate(sweep.override(latent, row.overrides), 1, check_files=False)


def test_round_two_picks_the_screens_best_two_new_aggregators_and_prints_its_stages(tmp_path):
    from benchmarks import round2

    def entry(fid, group="aggregator"):
        return {"group": group, "final": {"fid": [fid, 1.0]}}

    summary = {
        "vanilla": entry(300.0, "core"),
        "continuous_uw": entry(250.0),
        "ant_famo": entry(340.0),
        "ant_mgda": entry(320.0),
        "ant_upgrad": entry(330.0),
    }
    assert round2.best_new_aggregators(summary) == ["ant_mgda", "ant_upgrad"]
    with pytest.raises(ValueError, match="finish it first"):
        round2.best_new_aggregators({"ant_famo": entry(1.0)})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "benchmarks.round2", "--dry"]
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("round2: ")]
    assert [line.split(":")[1].strip() for line in lines] == list(round2.STAGES)
    if len(os.sched_getaffinity(0)) > 1:  # One worker per core, sharing the workdir.
        for stage in ("long", "table2_lr"):
            line = next(line for line in lines if line.startswith(f"round2: {stage}:"))
            assert line.count(" & ") == 1 and line.endswith("--worker=1/2")
        table2 = next(line for line in lines if line.startswith("round2: table2:"))
        assert " & " not in table2
    known = {
        row.name for row in reproduce_table1.table1_rows() + reproduce_table1.diagnostic_rows()
    }
    known |= {row.name for row in reproduce_table1.aggregator_rows()}
    for stage in ("diagnostics", "ancestral", "lr", "screen"):
        rows = next(a for a in round2.stage_args(stage) if a.startswith("--rows="))
        assert set(rows.removeprefix("--rows=").split(",")) <= known
    assert set(round2.LONG_CORE) <= known
    table2_lr = next(a for a in round2.stage_args("table2_lr") if a.startswith("--rows="))
    assert table2_lr.removeprefix("--rows=").split(",")[:4] == [
        "vanilla", "min_snr", "ant_uw", "ant_nash"
    ]  # fmt: skip
    assert {"vanilla_lr4e3", "ant_nash_lr2e3"} <= set(table2_lr.split(","))
    # The learning-rate curve: each rate's Nash row is paired with vanilla at that rate, and each
    # differs from the table's row of its method only in the rate.
    table = {row.name: row for row in reproduce_table1.table1_rows()}
    vanilla, nash = reproduce_table1.learning_rate_rows((2e-3,))
    assert (vanilla.name, nash.name, nash.control) == (
        "vanilla_lr2e3",
        "ant_nash_lr2e3",
        vanilla.name,
    )
    for row, base in ((vanilla, table["vanilla"]), (nash, table["ant_nash"])):
        assert row.overrides == {**base.overrides, "train.learning_rate": 2e-3}


def test_round_two_starts_lost_workdirs_from_their_snapshots_and_never_overwrites(tmp_path):
    from benchmarks import round2

    lost, kept = str(tmp_path / "lost"), str(tmp_path / "kept")
    snapshots = {lost: str(tmp_path / "lost.json"), kept: str(tmp_path / "kept.json")}
    for snapshot in snapshots.values():
        with open(snapshot, "w") as f:
            f.write("committed")
    os.makedirs(kept)
    with open(os.path.join(kept, "results.json"), "w") as f:
        f.write("newer")
    snapshots[str(tmp_path / "never_run")] = str(tmp_path / "none.json")  # neither file exists
    assert round2.restore_snapshots(snapshots) == [lost]
    with open(os.path.join(lost, "results.json")) as f:
        assert f.read() == "committed"
    with open(os.path.join(kept, "results.json")) as f:
        assert f.read() == "newer"
    assert round2.save_snapshots(snapshots) == [snapshots[lost], snapshots[kept]]
    with open(snapshots[kept]) as f:
        assert f.read() == "newer"
    assert not os.path.exists(str(tmp_path / "none.json"))
    # Every stage's workdir has a snapshot, and the committed screen names the long run's rows.
    assert set(round2.SNAPSHOTS) >= {round2.DIAGNOSTICS, round2.SCREEN, round2.LONG}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, round2.SNAPSHOTS[round2.SCREEN])) as f:
        assert len(round2.best_new_aggregators(json.load(f)["summary"])) == 2


def test_round_two_redoes_a_run_of_this_host_and_finds_every_field_that_differs():
    from benchmarks import round2

    done = {"2": {"fid": 5.0, "recall": 0.5}, "4": {"fid": 4.0, "recall": 0.25}}

    def record(row, seed, hosts, evals=done):
        return {"row": row, "seed": seed, "hosts": hosts, "evals": evals}

    runs = {
        "vanilla/seed_0": record("vanilla", 0, ["cpu: A"]),
        "ant_nash/seed_0": record("ant_nash", 0, ["cpu: B"]),  # another host
        "ant_uw/seed_0": record("ant_uw", 0, ["cpu: A"]),
        "ant_nash/seed_1": record("ant_nash", 1, ["cpu: A", "cpu: B"]),  # resumed elsewhere
        "ant_nash/seed_2": record("ant_nash", 2, ["cpu: A"], {"2": done["2"]}),  # unfinished
    }
    data = {"settings": {"eval_steps": [2, 4]}, "runs": runs}
    assert round2.check_run(data, ["cpu: A"]) == ("vanilla", 0, "cpu: A")
    assert round2.check_run(data, ["cpu: B", "cpu: C"]) == ("ant_nash", 0, "cpu: B")
    runs["ant_nash/seed_3"] = record("ant_nash", 3, ["cpu: A"])
    assert round2.check_run(data, ["cpu: A"]) == ("ant_nash", 3, "cpu: A")
    with pytest.raises(ValueError, match="on one of \\['cpu: C'\\]"):
        round2.check_run(data, ["cpu: C"])
    redone = json.loads(json.dumps(runs["vanilla/seed_0"]))
    assert round2.differences(runs["vanilla/seed_0"], redone) == []
    redone["evals"]["4"]["recall"] = 0.25 + 1e-16  # a difference in the last bit counts
    del redone["evals"]["2"]["fid"]
    assert round2.differences(runs["vanilla/seed_0"], redone) == [
        "2 fid: 5.0 != None",
        f"4 recall: 0.25 != {0.25 + 1e-16!r}",
    ]


def test_round_two_keeps_the_weights_of_finished_long_runs_once(tmp_path):
    from benchmarks import round2

    done = {"4": {"fid": 1.0}, "8": {"fid": 1.0}}
    runs = {
        "ant_uw/seed_0": {"row": "ant_uw", "seed": 0, "evals": done},
        "ant_uw/seed_1": {"row": "ant_uw", "seed": 1, "evals": {"4": {"fid": 1.0}}},
    }
    data = {"settings": {"eval_steps": [4, 8]}, "runs": runs}
    (tmp_path / "results.json").write_text(json.dumps(data))
    for name in runs:
        writer = events.EventWriter(str(tmp_path / "runs" / name))
        for step in (4, 8, 100):
            writer.write_scalars(step, {f"train/loss_weights/cluster_{i}": i + 1 for i in range(2)})
        writer.flush()
    path = str(tmp_path / "weights.json")
    assert round2.save_long_weights(str(tmp_path), path) == ["ant_uw/seed_0"]  # seed 1 runs
    kept = json.loads((tmp_path / "weights.json").read_text())
    assert list(kept) == ["ant_uw/seed_0"] and list(kept["ant_uw/seed_0"]) == ["100", "4", "8"]
    assert kept["ant_uw/seed_0"]["8"]["max_over_min"] == pytest.approx(2.0)
    assert round2.save_long_weights(str(tmp_path), path) == []  # kept, not read again


@pytest.mark.parametrize("use_clu", [False, True])
def test_loss_weights_are_read_back_from_the_events_at_the_nearest_logged_step(tmp_path, use_clu):
    from tools import loss_weights

    if use_clu and not events.tensorflow_available():
        pytest.skip("clu's writer needs TensorFlow")
    writer = events.create_writer(str(tmp_path), use_clu=use_clu)
    for step in (20, 40, 60):
        weights = {f"train/loss_weights/cluster_{i}": 0.1 * (i + 1) * step for i in range(3)}
        writer.write_scalars(step, {**weights, "train/loss": 1.0, "train/update_norm": step / 1e3})
    writer.flush()
    table = loss_weights.weights_at(str(tmp_path), [35, 100])
    assert list(table) == ["40", "60"]
    np.testing.assert_allclose(table["40"]["weights"], [4.0, 8.0, 12.0])
    assert table["60"]["max_over_min"] == pytest.approx(3.0)
    assert table["60"]["update_norm"] == pytest.approx(0.06)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no train/loss_weights"):
        loss_weights.weights_at(str(tmp_path / "empty"), [1])


def test_the_final_fid_can_use_more_samples_than_the_curve_and_old_results_still_match(tmp_path):
    base = make_tiny_config()
    config = sweep.run_config(base, VANILLA, 0, _settings(final_num_samples=16), str(tmp_path),
                              [VANILLA])  # fmt: skip
    assert config.eval.num_samples == 16  # the final evaluation's; the curve's stay 8
    assert (
        sweep.run_config(base, VANILLA, 0, _settings(), str(tmp_path), [VANILLA]).eval.num_samples
        == 8
    )
    recorded = json.loads(json.dumps(dataclasses.asdict(_settings())))
    assert "final_num_samples" not in sweep._recorded(recorded)  # results.json of older sweeps

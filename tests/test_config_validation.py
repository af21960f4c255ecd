"""Bad configs and data end in one line naming the field, before anything is compiled."""

import os
import subprocess
import sys

import pytest

from configs import fashion_mnist, fashion_mnist_dit
from diffmtl import config_validation
from diffmtl.data import from_config as data_from_config
from diffmtl.errors import UserError
from tools import config_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_config_is_valid_on_1_and_3_devices():
    config = fashion_mnist.get_config()
    config_validation.validate(config, 1)
    config_validation.validate(config, 3)  # 75 = 5 x 5 x 3.


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("diffusion.schedule", "quadratic", "diffusion.schedule='quadratic' is unknown"),
        ("diffusion.loss_weighting", "edm", "diffusion.loss_weighting='edm' is unknown"),
        ("clustering.k", 0, "clustering.k=0 must be between 1"),
        ("clustering.k", 1001, "clustering.k=1001 must be between 1"),
        ("clustering.method", "kmeans", "clustering.method='kmeans' is unknown"),
        ("mtl.method", "magic", "mtl.method='magic' is unknown"),
        ("train.learning_rate", 0.0, "train.learning_rate=0.0 must be > 0"),
        ("train.batch_size", 60, r"nearest valid sizes: \[50, 75\]"),
        ("data.image_size", 32, "but fashion_mnist images are 28x28x1: set --config.data.image"),
        ("train.batch_size", 0, "train.batch_size=0 must be a positive multiple"),
        ("train.batch_size", -75, "train.batch_size=-75 must be a positive multiple"),
        ("diffusion.beta_end", 2.0, "must satisfy 0 < beta_start < beta_end < 1"),
        ("diffusion.beta_start", 0.03, "beta_start=0.03 and diffusion.beta_end=0.02 must"),
        ("diffusion.num_timesteps", 10, "x 1000 / num_timesteps=10 = 2 must be < 1"),
        ("train.warmup_steps", -3, r"train.warmup_steps=-3 must be >= 0"),
        ("train.adam_b2", 1.0, r"train.adam_b2=1.0 must be in \[0, 1\)"),
        ("train.weight_decay", -0.1, "train.weight_decay=-0.1 must be >= 0"),
        ("train.fixed_grad_norm", -1.0, "train.fixed_grad_norm=-1.0 must be >= 0"),
        ("mtl.method", "equal", None),  # placeholder replaced below
        ("image_folder:data.image_size", 30, "data.image_size=30 cannot be halved 2 times"),
        ("model.num_groups", 5, "model.num_groups=5 must divide"),
        ("model.attention_resolutions", (3,), "no level reaches"),
        ("model.dtype", "float16", "model.dtype='float16' is unknown"),
        ("train.microbatch_loop", "while", "train.microbatch_loop='while' is unknown"),
        ("sampling.method", "euler", "sampling.method='euler' is unknown"),
        ("sampling.num_steps", 0, "sampling.num_steps=0 must be between 1"),
        ("sampling.eta", -0.5, "sampling.eta=-0.5 must be >= 0"),
        ("sampling.batch_size", 0, "sampling.batch_size=0 must be a positive multiple"),
        ("eval.feature_network", "clip", "eval.feature_network='clip' is unknown"),
        ("eval.reference_path", "/no/ref.npz", "eval.reference_path='/no/ref.npz' is not a file"),
        ("eval.val_num_timesteps", 1001, "eval.val_num_timesteps must be between 1"),
        ("sampling.guidance_scale", 1.5, "sampling.guidance_scale=1.5 needs class labels"),
        ("sampling.guidance_channels", 2, "guidance_channels=2 must be between 0 .all. and"),
        ("data.num_classes", -1, "data.num_classes=-1 must be >= 0"),
        ("model.class_dropout", 1.0, r"model.class_dropout=1.0 must be in \[0, 1\)"),
        ("model.name", "vit", "model.name='vit' is unknown"),
        ("dit:model.variant", "DiT-XXL/2", r"model.variant='DiT-XXL/2' is unknown"),
        ("dit:model.variant", "DiT-S/8", "has patch 8: data.image_size=28 must be a multiple"),
        ("dit:model.dropout", 0.1, "DiT has no dropout"),
        ("dit:model.attention_implementation", "flash", "attention_implementation='flash'"),
        ("dit:model.init_checkpoint", "dit.pt", "must be an .npz from tools/convert_dit.py"),
    ],
)
def test_bad_fields_are_named(field, value, message):
    """A 'dit:' field is set on configs/fashion_mnist_dit.py, the others on the default."""
    base, _, field = field.rpartition(":")
    config = (fashion_mnist_dit if base == "dit" else fashion_mnist).get_config()
    if base == "image_folder":  # a source of any image size: the model's own check speaks
        config.data.name, config.data.channels = "image_folder", 3
        config.eval.feature_network = "inception"
    section, name = field.split(".")
    config[section][name] = value
    if message is None:  # an option of a method that is not selected is still checked
        config.mtl.uw.learning_rate = -1.0
        message = r"mtl.uw.learning_rate=-1.0 must be > 0"
    with pytest.raises(UserError, match=message):
        config_validation.validate(config, 1, check_files=base != "image_folder")


def test_full_scale_configs_need_the_inception_file_to_train_but_not_to_dry_run():
    from configs import celebahq, ffhq

    for module in (ffhq, celebahq):
        config = module.get_config()
        config_validation.validate(config, 8, check_files=False)
        with pytest.raises(UserError, match=r"eval.inception_path='' is not a file"):
            config_validation.validate(config, 8)


def test_inception_needs_its_weights_file():
    config = fashion_mnist.get_config()
    config.eval.feature_network = "inception"
    config.eval.inception_path = "/no/pt_inception.npz"
    with pytest.raises(UserError, match="inception_path='/no/pt_inception.npz' is not a file"):
        config_validation.validate(config, 1)


def test_eval_batches_account_for_devices():
    config = fashion_mnist.get_config()
    config.eval.batch_size = 250
    with pytest.raises(UserError, match="eval.batch_size=250 must be a positive multiple of the 3"):
        config_validation.validate(config, 3)


def test_batch_size_accounts_for_devices():
    config = fashion_mnist.get_config()
    with pytest.raises(UserError, match=r"5 x 5 x 4 = 100; nearest valid sizes: \[100\]"):
        config_validation.validate(config, 4)


def run_main(*overrides, workdir):
    env = dict(os.environ, XLA_FLAGS="", TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "main.py", "--config=configs/fashion_mnist.py", f"--workdir={workdir}"]
    return subprocess.run(cmd + list(overrides), cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    "override,message",
    [
        ("--config.data.dir=/nonexistent", "data.dir /nonexistent does not exist"),
        ("--config.diffusion.schedule=sigmoid", "diffusion.schedule='sigmoid' is unknown"),
    ],
)
def test_main_reports_one_line_and_exit_status_2(override, message, tmp_path):
    result = run_main(override, workdir=tmp_path / "run")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # Nothing built or written.


def test_channels_must_match_the_data():
    config = fashion_mnist.get_config()
    config.data.channels = 3
    with pytest.raises(UserError, match="data.channels=3 but fashion_mnist images have 1"):
        data_from_config.make_source(config)


@pytest.mark.parametrize("module", [fashion_mnist, fashion_mnist_dit])
def test_every_field_has_a_check_that_names_it(module):
    """Generated bad values for every field of the config: each ends in a UserError naming that
    field, or the field is one of config_validation.FREE_FIELDS (with where it is checked). A
    field added without a check fails here."""
    unchecked = []
    for path, value in config_reference.fields(module.get_config()).items():
        field = ".".join(path)
        for bad in config_reference.bad_values(value):
            config = module.get_config()
            node = config
            for key in path[:-1]:
                node = node[key]
            try:  # ml_collections refuses a value of another type itself (a flags error)
                node[path[-1]] = bad
            except TypeError:
                continue
            try:
                config_validation.validate(config, 1, check_files=False)
            except UserError as e:
                assert "\n" not in str(e)
                if field in str(e) or field in config_validation.FREE_FIELDS:
                    continue
                unchecked.append((field, bad, str(e)[:100]))
            else:
                if field not in config_validation.FREE_FIELDS:
                    unchecked.append((field, bad, "accepted"))
    assert not unchecked, unchecked
    stale = set(config_validation.FREE_FIELDS) - {
        ".".join(p) for p in config_reference.fields(fashion_mnist.get_config())
    }
    assert not stale, stale


@pytest.mark.parametrize(
    "flag",
    [
        "--config.train.warmup_steps=-3",
        "--config.diffusion.beta_end=2.0",
        "--config.mtl.uw.learning_rate=-1",
    ],
)
def test_main_ends_bad_fields_in_one_line_and_writes_nothing(flag, tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/fashion_mnist.py",
            f"--workdir={workdir}",
            flag,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    field = flag.split("=")[0].removeprefix("--config.")
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in result.stderr
    assert not workdir.exists()

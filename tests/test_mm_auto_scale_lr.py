"""tools/train.py --auto-scale-lr, as mmdet's: the learning rate scaled by the run's total batch over the
config's auto_scale_lr.base_batch_size, in detection and segmentation (issue 24)."""
import pytest

from conftest import ROOT, assert_one_line_error, run_tool
from mm_tools import ONE_THREAD, read_json_logs

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")
from test_mm_detection import write_test_config as detection_config  # noqa: E402
from test_mm_detection import write_tiny_coco  # noqa: E402
from test_mm_segmentation import write_test_config as segmentation_config  # noqa: E402
from test_mm_segmentation import write_tiny_cityscapes  # noqa: E402

pytestmark = [pytest.mark.mm, pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")]


def first_lr(cfg, work_dir, data, *options):
    run_tool("tools/train.py", cfg, "--work-dir", work_dir, "--data-root", data, "--auto-scale-lr", "--cfg-options",
             *options, env=ONE_THREAD, check=True)
    (log,) = read_json_logs(work_dir)
    return next(r["lr"] for r in log if "lr" in r)


def test_detection_lr_scaled_by_batch_over_base(tmp_path):
    """The tiny RetinaNet config keeps the real one's auto_scale_lr (base 16) and batch 2 a GPU: one process
    trains at lr 0.01 x 2 / 16."""
    coco = write_tiny_coco(tmp_path / "coco")
    lr = first_lr(detection_config(tmp_path), tmp_path / "w", coco, "train_cfg.max_epochs=1",
                  "train_cfg.val_interval=100")
    assert lr == pytest.approx(0.01 * 2 / 16)


def test_segmentation_lr_scaled_by_batch_over_base(tmp_path):
    """mmseg trains with mmengine's Runner, which honours auto_scale_lr: Cityscapes' base batch 8, batch 2 here."""
    data = write_tiny_cityscapes(tmp_path / "cityscapes")
    lr = first_lr(segmentation_config(tmp_path), tmp_path / "w", data, "train_cfg.max_iters=1",
                  "train_cfg.val_interval=100", "optim_wrapper.optimizer.lr=0.04")
    assert lr == pytest.approx(0.04 * 2 / 8)


def test_config_without_a_base_batch_is_one_line(tmp_path):
    cfg = tmp_path / "no_base.py"
    cfg.write_text(f"_base_ = ['{ROOT / 'mm_configs' / 'retinanet_cydas_b.py'}']\nauto_scale_lr = dict(_delete_=True, "
                   f"enable=False)\n")
    assert_one_line_error(run_tool("tools/train.py", cfg, "--auto-scale-lr", "--work-dir", tmp_path / "w"),
                          "--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) in the config")


def test_our_configs_state_their_base_batch_and_loader_workers():
    from cydas_chain.mm.runner import load_config

    for name, base, gpus, workers in (("retinanet_cydas_b.py", 16, 8, 2), ("retinanet_cydas_a.py", 16, 8, 2),
                                      ("fpn_cydas_b_cityscapes.py", 8, 4, 6), ("fpn_cydas_b_ade20k.py", 16, 4, 4)):
        cfg = load_config(ROOT / "mm_configs" / name)
        assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=base), name
        assert cfg.train_dataloader.batch_size * gpus == base, name  # the schedule's GPUs x the batch per GPU
        # loader workers per GPU from bench/mm_pipeline.py (docs/mm.md), kept alive between epochs
        assert (cfg.train_dataloader.num_workers, cfg.train_dataloader.persistent_workers) == (workers, True), name

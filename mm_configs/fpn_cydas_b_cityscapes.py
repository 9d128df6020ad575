# CyDAS-b + Semantic FPN on Cityscapes (paper, Table 10: 78.1 mIoU; see docs/mm.md).
# mmseg's Semantic FPN recipe: 512x1024 crops, SGD lr 0.01 momentum 0.9 wd 5e-4, poly decay,
# 80k iterations, batch 8 (4 GPUs x 2).
#
#   torchrun --nproc_per_node 4 tools/train.py mm_configs/fpn_cydas_b_cityscapes.py --launcher pytorch
#   python tools/train.py mm_configs/fpn_cydas_b_cityscapes.py --auto-scale-lr    # 1 GPU: lr x 2/8
_base_ = [
    './_base_/fpn_cydas_b.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/schedules/schedule_80k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 1024)
model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(num_classes=19))
# Loader workers per GPU: decoding a 2048x1024 PNG, resizing, cropping and the photometric distortion
# run at ~10 images/s on one CPU core (bench/mm_pipeline.py, docs/mm.md); a GPU trains this 20 GMAC
# network at an estimated 20-40 images/s: 6 workers (~60 images/s) per GPU.
train_dataloader = dict(batch_size=2, num_workers=6, persistent_workers=True)
# --auto-scale-lr: lr x (GPUs x batch per GPU) / 8, for runs on other than 4 GPUs (mmengine's Runner.scale_lr)
auto_scale_lr = dict(enable=False, base_batch_size=8)

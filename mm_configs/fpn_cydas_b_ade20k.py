# CyDAS-b + Semantic FPN on ADE20K (paper, Table 10: 40.4 mIoU; see docs/mm.md).
# mmseg's Semantic FPN recipe: 512x512 crops, SGD lr 0.01 momentum 0.9 wd 5e-4, poly decay,
# 160k iterations, batch 16 (4 GPUs x 4).
#
#   torchrun --nproc_per_node 4 tools/train.py mm_configs/fpn_cydas_b_ade20k.py --launcher pytorch
#   python tools/train.py mm_configs/fpn_cydas_b_ade20k.py --auto-scale-lr    # 1 GPU: lr x 4/16
_base_ = [
    './_base_/fpn_cydas_b.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(num_classes=150))
# Loader workers per GPU: this pipeline (683x512 JPEG) runs at ~50 images/s on one CPU core
# (bench/mm_pipeline.py, docs/mm.md); a GPU trains this 10 GMAC network at an estimated 40-80 images/s:
# 4 workers (~200 images/s) per GPU.
train_dataloader = dict(batch_size=4, num_workers=4, persistent_workers=True)
# --auto-scale-lr: lr x (GPUs x batch per GPU) / 16, for runs on other than 4 GPUs (mmengine's Runner.scale_lr)
auto_scale_lr = dict(enable=False, base_batch_size=16)

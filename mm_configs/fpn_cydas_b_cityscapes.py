# CyDAS-b + Semantic FPN on Cityscapes (paper, Table 10: 78.1 mIoU; see docs/mm.md).
# mmseg's Semantic FPN recipe: 512x1024 crops, SGD lr 0.01 momentum 0.9 wd 5e-4, poly decay,
# 80k iterations, batch 8 (4 GPUs x 2).
#
#   torchrun --nproc_per_node 4 tools/train.py mm_configs/fpn_cydas_b_cityscapes.py --launcher pytorch
_base_ = [
    './_base_/fpn_cydas_b.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/schedules/schedule_80k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 1024)
model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(num_classes=19))
train_dataloader = dict(batch_size=2)

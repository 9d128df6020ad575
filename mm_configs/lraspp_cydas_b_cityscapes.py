# CyDAS-b + LR-ASPP on Cityscapes (paper: 78.1 mIoU with its own segmentation setting; docs/mm.md).
# mmseg's MobileNetV3 LR-ASPP recipe: 512x1024 crops, SGD lr 0.01 poly, 160k iterations,
# batch 16 (4 GPUs x 4).
#
#   torchrun --nproc_per_node 4 tools/train.py mm_configs/lraspp_cydas_b_cityscapes.py --launcher pytorch
_base_ = [
    './_base_/lraspp_cydas_b.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 1024)
model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(num_classes=19))
train_dataloader = dict(batch_size=4, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=4)
test_dataloader = val_dataloader

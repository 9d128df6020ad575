# CyDAS-b + LR-ASPP on ADE20K (paper: 40.4 mIoU with its own segmentation setting; docs/mm.md).
# The Cityscapes recipe with ADE20K's 150 classes and 512x512 crops: SGD lr 0.01 poly,
# 160k iterations, batch 16 (4 GPUs x 4).
#
#   torchrun --nproc_per_node 4 tools/train.py mm_configs/lraspp_cydas_b_ade20k.py --launcher pytorch
_base_ = [
    './_base_/lraspp_cydas_b.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(num_classes=150))
train_dataloader = dict(batch_size=4, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=4)
test_dataloader = val_dataloader

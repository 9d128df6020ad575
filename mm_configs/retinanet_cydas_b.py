# RetinaNet with a CyDAS-b backbone on COCO, the paper's 1x schedule (Table 9: 36.2 mAP):
# 12 epochs, SGD lr 0.02 momentum 0.9 weight decay 1e-4, lr x0.1 after epochs 8 and 11,
# batch 16 (8 GPUs x 2 images), images resized to 1333x800.
#
#   python tools/train.py mm_configs/retinanet_cydas_b.py --auto-scale-lr      # 1 GPU (or CPU): lr x 2/16
#   torchrun --nproc_per_node 8 tools/train.py mm_configs/retinanet_cydas_b.py --launcher pytorch
#
# The backbone starts from ImageNet weights trained with tools/train_cls.py (see docs/mm.md);
# `--data-root` or `--cfg-options` point the tools at a COCO copy elsewhere than data/coco/.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cydas_chain.mm.mmdet_backbone'], allow_failed_imports=False)

arch = 'cydas_b'  # or the path of an arch.json written by tools/search_chain.py
pretrained = f'checkpoints/{arch}_in1k.pth'  # ImageNet weights of the same arch (tools/convert_official.py or tools/train_cls.py)

model = dict(
    backbone=dict(
        _delete_=True,
        type='CyDAS',
        arch=arch,
        out_indices=(2, 3, 4),  # reductions 8, 16, 32 -> P3..P5; FPN adds P6, P7 on the last level
        frozen_stages=1,  # stem and the first stage, as mmdet's ResNet RetinaNet
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,  # 2 images a GPU are too few for batch statistics: keep ImageNet's
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[40, 96, 960], start_level=0))

# The paper's optimiser: lr 0.02 for batch 16 (the mmdet base has it; mmdet's R50 RetinaNet halves it).
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
# Loader workers per GPU: this pipeline (640x480 JPEG -> 1333x800) runs at ~85-120 images/s on one CPU
# core (bench/mm_pipeline.py, docs/mm.md), a GPU trains this detector at an estimated 15-30 images/s:
# 2 workers keep one GPU fed with room for slower storage.
train_dataloader = dict(num_workers=2, persistent_workers=True)
# --auto-scale-lr: lr x (GPUs x batch per GPU) / 16, for runs on other than 8 GPUs (mmengine's Runner.scale_lr)
auto_scale_lr = dict(enable=False, base_batch_size=16)

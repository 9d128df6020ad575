# CyDAS-b + LR-ASPP, the model of the segmentation configs.  The head is mmseg's MobileNetV3
# choice (Searching for MobileNetV3, Howard et al. 2019): LR-ASPP on an output-stride-8 backbone,
# with skips from the reduction-2 and reduction-4 levels.
_base_ = ['mmseg::_base_/models/lraspp_m-v3-d8.py']
custom_imports = dict(imports=['cydas_chain.mm.mmseg_backbone'], allow_failed_imports=False)

arch = 'cydas_b'  # or the path of an arch.json written by tools/search_chain.py
pretrained = f'checkpoints/{arch}_in1k.pth'  # ImageNet weights of the same arch (tools/train_cls.py)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # one GPU or CPU: set type='BN' (see docs/mm.md)

model = dict(
    backbone=dict(
        _delete_=True,
        type='CyDAS',
        arch=arch,
        # levels at reductions 2 and 4 (16, 24 channels) feed the head's skips; the last level
        # (960 channels) is dilated to output stride 8, as mmseg's MobileNetV3 "d8" backbone.
        out_indices=(0, 1, 4),
        output_stride=8,
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=(16, 24, 960), norm_cfg=norm_cfg))

# CyDAS-b + Semantic FPN (Kirillov et al., 2019: mmseg's FPN neck + FPNHead), the model of the
# segmentation configs.  Why this head for a mobile backbone (docs/mm.md has the numbers):
# the backbone runs at its ImageNet output stride 32 (no dilation), all four levels feed the
# head, and any input size works; neck and head are 128 channels wide.
_base_ = ['mmseg::_base_/models/fpn_r50.py']
custom_imports = dict(imports=['cydas_chain.mm.mmseg_backbone'], allow_failed_imports=False)

arch = 'cydas_b'  # or the path of an arch.json written by tools/search_chain.py
pretrained = f'checkpoints/{arch}_in1k.pth'  # ImageNet weights of the same arch (tools/convert_official.py or tools/train_cls.py)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # plain BN when the run is not distributed

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='CyDAS',
        arch=arch,
        out_indices=(1, 2, 3, 4),  # reductions 4, 8, 16, 32
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[24, 40, 96, 960], out_channels=128),
    decode_head=dict(in_channels=[128, 128, 128, 128], channels=128, norm_cfg=norm_cfg))

# RetinaNet with a CyDAS-a backbone on COCO, the paper's 1x schedule (Table 9: 35.2 mAP).
# Same detector, schedule and data as retinanet_cydas_b.py; CyDAS-a has the same feature widths.
_base_ = ['./retinanet_cydas_b.py']

arch = 'cydas_a'
pretrained = f'checkpoints/{arch}_in1k.pth'
model = dict(backbone=dict(arch=arch, init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

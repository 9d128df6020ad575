"""cydas_chain: CyDAS (cyclic differentiable architecture search) for mobile backbones.

Install for use:          pip install -e .
With detection/segmentation (needs mmcv 2.1.0 built first, see ./run):
                          pip install -e .[mm]
With the NAS-Bench-201 packages:  pip install -e .[nb201]
"""
from pathlib import Path

from setuptools import find_namespace_packages, setup

# The versions below are the ones the suite is tested with.  timm is pinned exactly because
# we build on its EfficientNet builder (`timm.models._efficientnet_builder`), a private module.
# torch is a range, so that a GPU machine's own CUDA build (a site or container torch, see README
# "GPU machines") is kept: the suite is tested with 2.14.1 (the newest these machines get, and what a
# fresh install picks); 2.6 is the oldest with the public APIs we use (torch.load's weights_only
# default, torch.serialization.add_safe_globals / safe_globals, torch.amp.GradScaler(device)), not
# tested.  ".0a0": container builds call themselves e.g. 2.6.0a0+<commit>.
CORE = [
    "torch>=2.6.0a0,<2.15",
    "torchvision>=0.21.0a0,<0.30",
    "timm==1.0.31",
    "fvcore==0.1.5.post20221221",
    "thop==0.1.1.post2209072238",
    "numpy>=2.0,<2.5",
    "tqdm>=4.60",
    "matplotlib>=3.7",
    "tensorboard>=2.14",
    "pillow>=9.0",
]
MM = [
    "mmengine==0.10.7",
    "mmcv==2.1.0",  # no wheel on the registry: ./run builds it from source before this extra
    "mmdet==3.3.0",
    "mmsegmentation==1.2.2",
    "ftfy",
    "regex",
    "pycocotools>=2.0.7",
]
TEST = ["pytest>=8", "pytest-xdist>=3.5", "scipy>=1.10"]
# NAS-Bench-201 results through the benchmark's own packages (tools/nb201_lookup.py, search_cell
# --nb201-api); without them the NAS-Bench-201 .pth file is read by cydas_chain.darts.nb201_bench.
NB201 = ["nas-bench-201==2.1", "nats_bench==1.8"]

setup(
    name="cydas_chain",
    version="0.1.0",
    description="CyDAS architecture search for mobile backbones, with timm / MMDetection / MMSegmentation integration",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Namespace discovery: the data-only folders (core/embedded, models/darts/published) are packages
    # too, so that their files install without setuptools' "package would be ignored" warnings.
    packages=find_namespace_packages(include=["cydas_chain", "cydas_chain.*"], exclude=["*.__pycache__"]),
    include_package_data=True,
    package_data={"cydas_chain": ["**/*.json", "**/*.csv.gz", "**/*.md"]},
    install_requires=CORE,
    extras_require={"mm": MM, "test": TEST, "nb201": NB201, "bench": ["scipy>=1.10"]},
)

# Package discovery lives here because the napari plugin folder `napari_plugin/` is installed
# under the specific import name `sam_med_napari` (a generic name could clash with other plugins).
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["sam_med", "sam_med.*"]) + ["sam_med_napari"],
    package_dir={"sam_med_napari": "napari_plugin"},
)

"""The CVPR 2025 interactive 3D segmentation challenge protocol: click simulation
(:mod:`.clicks`), metrics (:mod:`.metrics`), the 6-step loop in process or one `sam-med
segment` per step (:mod:`.protocol`), reports (:mod:`.report`) and the dataset runner
(:mod:`.runner`). Arrays are in the challenge's (D, H, W) = (z, y, x) order throughout."""

"""Register the LAST epoch (5) of the lite_medsam_clicks3d run as lite_medsam_clicks3d_e5 (not the
selected epoch: for the 3D measurement only).

    python benchmarks/clicks3d_export_e5.py
"""
import sys, copy, torch, yaml
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from pathlib import Path
from sam_med.models import load_model
from sam_med.models.checkpoint import sha256_file
from sam_med.training.export import delta_state_dict
lm = load_model("lite_medsam", autocast_dtype=None)
m = copy.deepcopy(lm.model)
st = torch.load(Path("~/.cache/sam-med/finetune/lite_medsam_clicks3d/last.pt").expanduser(), map_location="cpu", weights_only=True)
assert st["epoch"] == 5, st["epoch"]
sd = m.state_dict(); sd.update(st["trainable"]); m.load_state_dict(sd)
d = Path("~/.config/sam-med/models").expanduser()
w = d / "lite_medsam_clicks3d_e5.pt"
torch.save(delta_state_dict(m, "decoder", True), w)
cfg = yaml.safe_load((d / "lite_medsam_clicks3d.yaml").read_text())
cfg["name"] = "lite_medsam_clicks3d_e5"
cfg["checkpoint"] = dict(cfg["checkpoint"], path=str(w.resolve()), file_name=w.name, sha256=sha256_file(w))
cfg["description"] = "lite_medsam_clicks3d, last epoch (5) instead of the selected epoch 0: for measurement"
(d / "lite_medsam_clicks3d_e5.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
print("wrote", w)

"""Train-fit check: click-decode Dice of a run's last epoch (last.pt) vs the base, on the
training and validation samples of configs/finetune/lite_medsam_clicks3d.yaml.

    python benchmarks/clicks3d_trainfit.py lite_medsam_clicks3d 0   # run name, 1 = with the mask prompt
"""
import sys, copy, json, torch, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
torch.set_num_threads(1)
from pathlib import Path
from sam_med.training import load_config, trainable_parameters, set_trainable
from sam_med.training.sources import parse_sources, extract_source_slices
from sam_med.training.errors3d import click_dice
from sam_med.models import load_model
from sam_med.predictors.embedding_cache import EmbeddingCache
name, mp = sys.argv[1], sys.argv[2] == "1"
cfg = load_config(str(__import__("pathlib").Path(__file__).resolve().parents[1]) + "/configs/finetune/lite_medsam_clicks3d.yaml")
lm = load_model("lite_medsam", autocast_dtype=None)
cache = EmbeddingCache(max_bytes=4 << 30, cache_dir=Path(__file__).resolve().parents[1] / ".cache/emb")
tr = extract_source_slices(parse_sources(cfg["data"]["sources"]), lm, cache)
va = extract_source_slices(parse_sources(cfg["data"]["heldout"]), lm, cache)
m = copy.deepcopy(lm.model)
st = torch.load(Path(f"~/.cache/sam-med/finetune/{name}/last.pt").expanduser(), map_location="cpu", weights_only=True)["trainable"]
sd = m.state_dict(); sd.update(st); m.load_state_dict(sd)
out = {}
for tag, items in (("train", tr), ("val", va)):
    out[tag] = {"n": len(items), "base": float(click_dice(lm.model, lm, items, mask_prompt=mp).mean()),
                "last_epoch": float(click_dice(m, lm, items, mask_prompt=mp).mean())}
print(json.dumps(out))

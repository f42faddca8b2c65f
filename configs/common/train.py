"""Training-loop settings shared by all configs (detectron2's common/train.py + device)."""

from detectron2.model_zoo import get_config

from denseclip.config import default_device

train = get_config("common/train.py").train
train.device = default_device()
# A converted OpenAI CLIP file (tools/convert_clip.py) or a detectron2 checkpoint; empty trains
# from scratch (the run says so).
train.init_checkpoint = ""

"""Training-loop settings shared by all configs (detectron2's common/train.py + device)."""

from detectron2.model_zoo import get_config

from denseclip.config import default_device

train = get_config("common/train.py").train
train.device = default_device()
# A converted OpenAI CLIP file (tools/convert_clip.py) or a detectron2 checkpoint; empty trains
# from scratch (the run says so).
train.init_checkpoint = ""
# One optimizer step every N data-loader batches: N × dataloader.train.total_batch_size images
# per step (e.g. 2 GPUs × 4 images × 4 steps = the official 32); max_iter counts steps.
train.grad_accumulation_steps = 1

"""The stage names of the image encoders' 4-level pyramid (detectron2's ResNet names) and their
strides."""

STAGES = ("res2", "res3", "res4", "res5")
STAGE_STRIDES = {name: 4 * 2**i for i, name in enumerate(STAGES)}

"""Size changes shared by DenseCLIP configs: of a ``DenseCLIPBackbone`` config node
(``use_rn101``, ``use_tiny``) and of a whole DenseCLIP detector over it (``use_tiny_retinanet``,
``use_tiny_mask_rcnn``, for the ResNet configs and the ViT ones derived from them)."""

from detectron2.layers import ShapeSpec


def use_rn101(bottom_up):
    """CLIP RN101: [3, 4, 23, 3] blocks and a 512-channel joint embedding space."""
    bottom_up.image_encoder.layers = [3, 4, 23, 3]
    bottom_up.image_encoder.output_dim = 512
    bottom_up.prompts.text_encoder.embed_dim = 512


def use_tiny(bottom_up, class_names):
    """Toy widths that train on 2 CPU cores: a width-16 CLIP ResNet at 128², a 2-layer text
    encoder of width 64, a 1-layer context decoder of width 32; the given class prompts."""
    bottom_up.image_encoder.update(
        layers=[1, 1, 1, 1], width=16, output_dim=64, input_resolution=128
    )
    bottom_up.prompts.text_encoder.update(width=64, heads=4, layers=2, embed_dim=64)
    bottom_up.prompts.class_names = class_names
    bottom_up.context_decoder.update(width=32, num_heads=4, num_layers=1)


def use_tiny_retinanet(model, class_names):
    """The DenseCLIP RetinaNet (``retinanet_denseclip.py``) at toy widths: ``use_tiny``'s
    backbone, a 64-channel FPN and head, anchors half the COCO sizes (for 20–50 px shapes)."""
    use_tiny(model.backbone.bottom_up, class_names)
    model.backbone.top_block.in_channels.channels = 16 * 32  # res5 of the width-16 ResNet
    model.backbone.out_channels = 64
    model.head.update(input_shape=[ShapeSpec(channels=64)] * 5, conv_dims=[64, 64])
    model.anchor_generator.sizes = [
        [x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in [16, 32, 64, 128, 256]
    ]
    model.num_classes = len(class_names)


def use_tiny_mask_rcnn(model, class_names):
    """The DenseCLIP Mask R-CNN (``mask_rcnn_denseclip.py``) at toy widths: ``use_tiny``'s
    backbone, a 64-channel FPN, narrow heads, anchors half the COCO sizes, fewer sampled anchors,
    proposals and RoIs (for 128×128 images with 1–4 shapes)."""
    use_tiny(model.backbone.bottom_up, class_names)
    model.backbone.out_channels = 64
    model.proposal_generator.update(
        batch_size_per_image=64, pre_nms_topk=(600, 300), post_nms_topk=(150, 100)
    )
    model.proposal_generator.head.in_channels = 64
    model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
    model.roi_heads.update(num_classes=len(class_names), batch_size_per_image=64)
    model.roi_heads.box_head.update(
        input_shape=ShapeSpec(channels=64, height=7, width=7), fc_dims=[256, 256]
    )
    model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
    model.roi_heads.mask_head.update(
        input_shape=ShapeSpec(channels=64, height=14, width=14), conv_dims=[64, 64, 64]
    )

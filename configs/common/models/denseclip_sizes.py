"""Size changes shared by DenseCLIP configs, applied to a ``DenseCLIPBackbone`` config node."""


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

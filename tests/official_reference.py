"""The official DenseCLIP segmentation forward (eval mode) in plain PyTorch, for equivalence tests.

Re-stated from raoyongming/DenseCLIP (``segmentation/denseclip/{denseclip,models}.py``) and the
mmseg 0.19 / mmcv 1.3.17 parts it runs on (FPN neck, FPNHead, ConvModule, EncoderDecoder's whole
and slide inference), with the official module structure, so that ``state_dict()`` has the
official key names. Nothing here comes from ``denseclip``: the pieces the official code copies
verbatim from OpenAI CLIP (Bottleneck, Transformer, LayerNorm, tokenize) are OpenAI's own
``clip`` package. Training-only parts (losses, drop path, the IdentityHead) are left out; the
dropouts are modules, inactive in eval mode, as in the official code.
"""

from typing import List, Sequence, Tuple

import clip
import numpy as np
import torch
import torch.nn.functional as F
from clip.model import Bottleneck, LayerNorm, Transformer
from torch import nn

# mmseg's img_norm_cfg of the official ADE20K configs (CLIP's mean and std in RGB, 0..255)
IMG_MEAN = [v * 255 for v in (0.48145466, 0.4578275, 0.40821073)]
IMG_STD = [v * 255 for v in (0.26862954, 0.26130258, 0.27577711)]


def normalize(image: torch.Tensor) -> torch.Tensor:
    """3×H×W RGB 0..255 → 1×3×H×W, as mmseg's Normalize(to_rgb=True) on the BGR file."""
    mean = torch.tensor(IMG_MEAN).view(3, 1, 1)
    std = torch.tensor(IMG_STD).view(3, 1, 1)
    return ((image - mean) / std)[None]


# ----------------------------------------------------------------------------- image encoders


class AttentionPool2d(nn.Module):
    """Official attention pool, every token kept: the positional grid resized bilinearly to the
    map (segmentation, ``pos_embed="resize"``) or cropped to it (detection, ``"crop"``)."""

    def __init__(
        self,
        spacial_dim: int,
        embed_dim: int,
        num_heads: int,
        output_dim: int,
        pos_embed: str = "resize",
    ):
        super().__init__()
        self.pos_embed = pos_embed
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim**2 + 1, embed_dim))
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads
        self.embed_dim = embed_dim
        self.spacial_dim = spacial_dim

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """B×C×H×W → (global B×D, dense B×D×H×W)."""
        B, C, H, W = x.shape
        x = x.reshape(B, C, H * W).permute(2, 0, 1)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        side = self.spacial_dim
        grid = self.positional_embedding[1:].reshape(1, side, side, C).permute(0, 3, 1, 2)
        if self.pos_embed == "crop":
            grid = grid[:, :, :H, :W]
        else:
            grid = F.interpolate(grid, size=(H, W), mode="bilinear")
        grid = grid.reshape(C, H * W).permute(1, 0)
        x = x + torch.cat([self.positional_embedding[:1], grid])[:, None, :]
        x, _ = F.multi_head_attention_forward(
            query=x,
            key=x,
            value=x,
            embed_dim_to_check=C,
            num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight,
            v_proj_weight=self.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True,
            training=False,
            need_weights=False,
        )
        x = x.permute(1, 2, 0)
        return x[:, :, 0], x[:, :, 1:].reshape(B, -1, H, W)


class CLIPResNet(nn.Module):
    """Official ``CLIPResNetWithAttention`` (``with_attention=True``, 32 heads, always) or
    ``CLIPResNet`` (the baselines: no attention pool); ``pos_embed`` as :class:`AttentionPool2d`
    ("crop" in the detection code)."""

    def __init__(
        self,
        layers: Sequence[int],
        width: int,
        output_dim: int,
        input_resolution: int,
        with_attention: bool = True,
        pos_embed: str = "resize",
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        if with_attention:
            self.attnpool = AttentionPool2d(
                input_resolution // 32, width * 32, 32, output_dim, pos_embed
            )

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple:
        """→ (res2, res3, res4, res5[, [global, dense]])."""
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        if hasattr(self, "attnpool"):
            outs.append(list(self.attnpool(x)))
        return tuple(outs)


class CLIPVisionTransformer(nn.Module):
    """Official ``CLIPVisionTransformer`` with patch size 16 (BatchNorm in ``fpn1``: the official
    SyncBatchNorm is BatchNorm in eval mode, with the same state-dict entries)."""

    def __init__(
        self,
        input_resolution: int,
        width: int,
        layers: int,
        heads: int,
        output_dim: int,
        out_indices: Sequence[int],
        get_embeddings: bool,
        patch_size: int = 16,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width)
        )
        self.spatial_size = input_resolution // patch_size
        self.ln_pre = LayerNorm(width)
        self.get_embeddings = get_embeddings
        self.transformer = Transformer(width, layers, heads)
        self.out_indices = list(out_indices)
        if get_embeddings:
            self.ln_post = LayerNorm(width)
            self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        self.fpn1 = nn.Sequential(
            nn.GroupNorm(1, width),
            nn.ConvTranspose2d(width, width, kernel_size=2, stride=2),
            nn.BatchNorm2d(width),
            nn.GELU(),
            nn.ConvTranspose2d(width, width, kernel_size=2, stride=2),
        )
        self.fpn2 = nn.Sequential(
            nn.GroupNorm(1, width), nn.ConvTranspose2d(width, width, kernel_size=2, stride=2)
        )
        self.fpn3 = nn.GroupNorm(1, width)
        self.fpn4 = nn.Sequential(nn.GroupNorm(1, width), nn.MaxPool2d(kernel_size=2, stride=2))

    def forward(self, x: torch.Tensor) -> tuple:
        """→ (stride 4, 8, 16, 32 maps[, [global, dense at stride 16]])."""
        x = self.conv1(x)
        B, C, H, W = x.shape
        x = x.reshape(B, C, -1).permute(0, 2, 1)
        x = torch.cat([self.class_embedding + torch.zeros(B, 1, C), x], dim=1)
        pos = self.positional_embedding
        cls_pos = pos[0, :] + self.class_embedding
        side = self.spatial_size
        grid = pos[1:].reshape(1, side, side, C).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(H, W), mode="bilinear").reshape(1, C, H * W)
        x = x + torch.cat([cls_pos.reshape(1, 1, C), grid.permute(0, 2, 1)], dim=1)
        x = self.ln_pre(x).permute(1, 0, 2)
        features = []
        for i, block in enumerate(self.transformer.resblocks):
            x = block(x)
            if i in self.out_indices:
                patches = x.permute(1, 0, 2)[:, 1:, :].permute(0, 2, 1).reshape(B, -1, H, W)
                features.append(patches.contiguous())
        ops = [self.fpn1, self.fpn2, self.fpn3, self.fpn4]
        features = [op(feature) for op, feature in zip(ops, features)]
        if self.get_embeddings:
            x = self.ln_post(x.permute(1, 0, 2)) @ self.proj
            dense = x[:, 1:].reshape(B, H, W, -1).permute(0, 3, 1, 2)
            features.append([x[:, 0], dense])
        return tuple(features)


# ----------------------------------------------------------------------------- text side


class CLIPTextContextEncoder(nn.Module):
    """Official text encoder: [SOT, contexts, class tokens] → features at argmax(tokens) + N."""

    def __init__(
        self,
        context_length: int,
        transformer_width: int,
        transformer_heads: int,
        transformer_layers: int,
        embed_dim: int,
        vocab_size: int = 49408,
    ):
        super().__init__()
        self.context_length = context_length
        mask = torch.empty(context_length, context_length).fill_(float("-inf")).triu_(1)
        self.transformer = Transformer(
            transformer_width, transformer_layers, transformer_heads, attn_mask=mask
        )
        self.embed_dim = embed_dim
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))

    def forward(self, text: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """text: K×N1 tokens, context: B×N2×C → B×K×embed_dim."""
        x_text = self.token_embedding(text)
        K, N1, C = x_text.shape
        B, N2, _ = context.shape
        eos_index = (text.argmax(dim=-1) + N2).reshape(1, K).expand(B, K).reshape(-1)
        x_text = x_text.reshape(1, K, N1, C).expand(B, K, N1, C)
        context = context.reshape(B, 1, N2, C).expand(B, K, N2, C)
        x = torch.cat([x_text[:, :, 0:1], context, x_text[:, :, 1:]], dim=2)
        x = x.reshape(B * K, N1 + N2, C) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0]), eos_index] @ self.text_projection
        return x.reshape(B, K, self.embed_dim)


class Attention(nn.Module):
    """Official context-decoder attention (bias-free q/k/v)."""

    def __init__(self, dim: int, num_heads: int, proj_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, N, C = q.shape
        M = k.shape[1]
        heads = self.num_heads
        q = self.q_proj(q).reshape(B, N, heads, C // heads)
        k = self.k_proj(k).reshape(B, M, heads, C // heads)
        v = self.v_proj(v).reshape(B, M, heads, C // heads)
        attn = (torch.einsum("bnkc,bmkc->bknm", q, k) * self.scale).softmax(dim=-1)
        x = torch.einsum("bknm,bmkc->bnkc", attn, v).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(d_model, nhead, dropout)
        self.cross_attn = Attention(d_model, nhead, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, d_model * 4),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(d_model * 4, d_model),
        )

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        q = k = v = self.norm1(x)
        x = x + self.self_attn(q, k, v)
        q = self.norm2(x)
        x = x + self.cross_attn(q, mem, mem)
        return x + self.dropout(self.mlp(self.norm3(x)))


class ContextDecoder(nn.Module):
    """Official context decoder: text (B×K×C) attends to the visual context (B×N×C)."""

    def __init__(
        self,
        transformer_width: int,
        transformer_heads: int,
        transformer_layers: int,
        visual_dim: int,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.memory_proj = nn.Sequential(
            nn.LayerNorm(visual_dim),
            nn.Linear(visual_dim, transformer_width),
            nn.LayerNorm(transformer_width),
        )
        self.text_proj = nn.Sequential(
            nn.LayerNorm(visual_dim), nn.Linear(visual_dim, transformer_width)
        )
        self.decoder = nn.ModuleList(
            [
                TransformerDecoderLayer(transformer_width, transformer_heads, dropout)
                for _ in range(transformer_layers)
            ]
        )
        self.out_proj = nn.Sequential(
            nn.LayerNorm(transformer_width), nn.Linear(transformer_width, visual_dim)
        )

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        visual = self.memory_proj(visual)
        x = self.text_proj(text)
        for layer in self.decoder:
            x = layer(x, visual)
        return self.out_proj(x)


# ----------------------------------------------------------------------------- mmseg decoder


class ConvModule(nn.Module):
    """mmcv ConvModule as the official configs build it: conv (bias only without a norm, padding
    kernel_size // 2), then optionally BN and ReLU (``norm_act``) or ReLU alone (``relu``, the
    mmdet heads); submodule names ``conv`` and ``bn``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        norm_act: bool = False,
        relu: bool = False,
        stride: int = 1,
    ):
        super().__init__()
        padding = kernel_size // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=padding, bias=not norm_act
        )
        self.norm_act = norm_act
        self.relu = relu
        if norm_act:
            self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm_act:
            x = self.bn(x)
        return F.relu(x) if self.norm_act or self.relu else x


class FPN(nn.Module):
    """mmseg FPN (num_outs = number of inputs, no norm, no activation): the top-down path adds
    the coarser lateral resized to the finer one's size (nearest)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        self.lateral_convs = nn.ModuleList([ConvModule(c, out_channels, 1) for c in in_channels])
        self.fpn_convs = nn.ModuleList(
            [ConvModule(out_channels, out_channels, 3) for _ in in_channels]
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            prev_shape = laterals[i - 1].shape[2:]
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=prev_shape, mode="nearest"
            )
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals)]


class Upsample(nn.Module):
    """mmseg.ops.Upsample(scale_factor=2, bilinear): resizes to int(2·size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = [int(t * 2) for t in x.shape[-2:]]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class FPNHead(nn.Module):
    """mmseg FPNHead: per level 3×3 ConvModules (BN, ReLU) each followed by a ×2 upsampling
    (but level 0), each level resized to level 0's size and summed; dropout; 1×1 ``conv_seg``."""

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        feature_strides: Sequence[int] = (4, 8, 16, 32),
        dropout_ratio: float = 0.1,
    ):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for i, stride in enumerate(feature_strides):
            head_length = max(1, int(np.log2(stride) - np.log2(feature_strides[0])))
            layers = []
            for k in range(head_length):
                layers.append(
                    ConvModule(in_channels[i] if k == 0 else channels, channels, 3, norm_act=True)
                )
                if stride != feature_strides[0]:
                    layers.append(Upsample())
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(dropout_ratio)
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        output = self.scale_heads[0](inputs[0])
        for i in range(1, len(inputs)):
            output = output + F.interpolate(
                self.scale_heads[i](inputs[i]),
                size=output.shape[2:],
                mode="bilinear",
                align_corners=False,
            )
        return self.conv_seg(self.dropout(output))


# ----------------------------------------------------------------------------- segmentors


class EncoderDecoder(nn.Module):
    """mmseg EncoderDecoder at test time (the official CLIP baselines).

    Args:
        test_cfg: ``{"mode": "whole"}`` or ``{"mode": "slide", "crop_size": (h, w),
            "stride": (h, w)}``.
    """

    def __init__(self, backbone: nn.Module, neck: FPN, decode_head: FPNHead, test_cfg: dict):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.decode_head = decode_head
        self.test_cfg = test_cfg

    def extract_feat(self, img: torch.Tensor) -> List[torch.Tensor]:
        return list(self.backbone(img))

    def encode_decode(self, img: torch.Tensor) -> torch.Tensor:
        """B×3×H×W → B×K×H×W logits."""
        out = self.decode_head(self.neck(self.extract_feat(img)))
        return F.interpolate(out, size=img.shape[2:], mode="bilinear", align_corners=False)

    def slide_inference(self, img: torch.Tensor) -> torch.Tensor:
        h_stride, w_stride = self.test_cfg["stride"]
        h_crop, w_crop = self.test_cfg["crop_size"]
        batch_size, _, h_img, w_img = img.shape
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        num_classes = self.decode_head.conv_seg.out_channels
        preds = img.new_zeros((batch_size, num_classes, h_img, w_img))
        count_mat = img.new_zeros((batch_size, 1, h_img, w_img))
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y2 = min(h_idx * h_stride + h_crop, h_img)
                x2 = min(w_idx * w_stride + w_crop, w_img)
                y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
                crop_seg_logit = self.encode_decode(img[:, :, y1:y2, x1:x2])
                preds += F.pad(crop_seg_logit, (x1, w_img - x2, y1, h_img - y2))
                count_mat[:, :, y1:y2, x1:x2] += 1
        return preds / count_mat

    def forward(self, img: torch.Tensor, ori_shape: Tuple[int, int]) -> torch.Tensor:
        """Normalised 1×3×H×W → 1×K×ori_h×ori_w logits (``inference`` before the softmax)."""
        if self.test_cfg["mode"] == "slide":
            seg_logit = self.slide_inference(img)
        else:
            seg_logit = self.encode_decode(img)
        return F.interpolate(seg_logit, size=ori_shape, mode="bilinear", align_corners=False)


class DenseCLIPTextSide:
    """The official DenseCLIP text side, mixed into a segmentor or detector (``nn.Module``) so
    that its parameters keep the official top-level names (``text_encoder``, ``context_decoder``,
    ``contexts``, ``gamma``): text features with learnable contexts, refined by the context
    decoder (t + γ·Δt) from the attention pool's [z̄, z], and the pixel-text score map."""

    def init_text_side(
        self,
        text_encoder: CLIPTextContextEncoder,
        context_decoder: ContextDecoder,
        class_names: Sequence[str],
        context_length: int = 5,
    ) -> None:
        self.text_encoder = text_encoder
        self.context_decoder = context_decoder
        self.texts = clip.tokenize(list(class_names), context_length=context_length)
        num_contexts = text_encoder.context_length - context_length
        token_embed_dim = text_encoder.token_embedding.embedding_dim
        self.contexts = nn.Parameter(torch.randn(1, num_contexts, token_embed_dim))
        self.gamma = nn.Parameter(torch.ones(text_encoder.embed_dim) * 1e-4)

    def concat_score_map(self, x: Sequence, index: int, scale: float = 1.0) -> List[torch.Tensor]:
        """Backbone outputs (res2..res5, [global, dense]) → res2..res5 with the score map
        (B×K×h×w cosine scores, times ``scale``) concatenated to output ``index``."""
        x_orig = list(x[0:4])
        global_feat, visual_embeddings = x[4]
        B, C, H, W = visual_embeddings.shape
        visual_context = torch.cat(
            [global_feat.reshape(B, C, 1), visual_embeddings.reshape(B, C, H * W)], dim=2
        ).permute(0, 2, 1)
        text_embeddings = self.text_encoder(self.texts, self.contexts).expand(B, -1, -1)
        text_diff = self.context_decoder(text_embeddings, visual_context)
        text_embeddings = text_embeddings + self.gamma * text_diff
        visual_embeddings = F.normalize(visual_embeddings, dim=1, p=2)
        text = F.normalize(text_embeddings, dim=2, p=2)
        score_map = torch.einsum("bchw,bkc->bkhw", visual_embeddings, text) * scale
        x_orig[index] = torch.cat([x_orig[index], score_map], dim=1)
        return x_orig


class DenseCLIP(EncoderDecoder, DenseCLIPTextSide):
    """The official DenseCLIP segmentor at test time: the pixel-text score map concatenated
    (unscaled) to the backbone output ``score_concat_index``."""

    def __init__(
        self,
        backbone: nn.Module,
        text_encoder: CLIPTextContextEncoder,
        context_decoder: ContextDecoder,
        neck: FPN,
        decode_head: FPNHead,
        class_names: Sequence[str],
        test_cfg: dict,
        context_length: int = 5,
        score_concat_index: int = 3,
    ):
        super().__init__(backbone, neck, decode_head, test_cfg)
        self.init_text_side(text_encoder, context_decoder, class_names, context_length)
        self.score_concat_index = score_concat_index

    def extract_feat(self, img: torch.Tensor) -> List[torch.Tensor]:
        return self.concat_score_map(self.backbone(img), self.score_concat_index)


# ----------------------------------------------------------------------------- random weights


_NORMS = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Draws every parameter and BN statistic from ``seed`` alone: weights that keep activations
    in a sane range (std fan_in^-1/2), norm layers that are not identities (random affine
    parameters and running statistics), and N(0, 0.5²) for the rest (embeddings, contexts,
    γ, projections)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _NORMS):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(std=0.1)
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.normal_(std=0.1)
                    module.running_var.uniform_(0.5, 1.5)
            elif isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = module.in_channels if isinstance(module, nn.ConvTranspose2d) else None
                module.weight.normal_(std=(fan_in or module.weight[0].numel()) ** -0.5)
                if module.bias is not None:
                    module.bias.normal_(std=0.1)
            elif isinstance(module, nn.MultiheadAttention):
                module.in_proj_weight.normal_(std=module.embed_dim**-0.5)
                module.in_proj_bias.normal_(std=0.1)
            else:
                for param in module.parameters(recurse=False):
                    param.normal_(std=0.5)
    return model

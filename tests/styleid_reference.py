"""StyleID as its authors ran it, written from their code (jiwoogit/StyleID), not from gen's, in float64.

* `original`: run_styleid.py with ldm/models/diffusion/ddim.py (DDIMSampler.encode_ddim, reverse_ddim,
  ddim_sampling with start_step) and ldm/modules/attention.py (CrossAttention.forward with injected q/k/v);
* `port`: diffusers_implementation/run_styleid_diffusers.py (invert_process, reverse_process, the AdaIN
  line before it) and stable_diffusion.py (attention_op).

Both drive a diffusers UNet (the same weights gen runs) through an attention processor that does what the
authors' attention does: record q, k, v during the inversions; during generation replace k, v by the
style's and mix the content's q in, with the temperature on the logits. Only the method is re-written
here; the UNet, the VAE latents and the empty-prompt embedding are shared with gen.
"""

from __future__ import annotations

import torch


class AuthorsAttention:
    """ldm CrossAttention.forward / the port's attention_op for a self-attention (attn1) layer."""

    def __init__(self, name: str, run: "_Run"):
        self.name, self.run = name, run

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        assert encoder_hidden_states is None and attn.group_norm is None and attn.spatial_norm is None
        heads = attn.heads

        def to_heads(x):  # 'b n (h d) -> (b h) n d'
            b, n, hd = x.shape
            return x.view(b, n, heads, hd // heads).permute(0, 2, 1, 3).reshape(b * heads, n, hd // heads)

        q, k, v = (to_heads(f(hidden_states)) for f in (attn.to_q, attn.to_k, attn.to_v))
        if self.run.record is not None:
            self.run.record[self.name] = (q, k, v)
        scale = 1.0
        injected = self.run.inject.get(self.name) if self.run.inject else None
        if injected is not None:
            q_content, k_style, v_style = injected
            gamma = self.run.gamma
            q = q_content * gamma + q * (1.0 - gamma)
            k, v = k_style, v_style
            scale = self.run.temperature
        sim = torch.einsum("bid,bjd->bij", q, k) * scale * attn.scale
        out = torch.einsum("bij,bjd->bid", sim.softmax(dim=-1), v)
        b = hidden_states.shape[0]
        out = out.reshape(b, heads, out.shape[1], out.shape[2]).permute(0, 2, 1, 3).reshape(b, out.shape[1], -1)
        return attn.to_out[1](attn.to_out[0](out))


class _Run:
    """The UNet with the authors' attention on the injected layers; records every call it makes."""

    def __init__(self, unet, cond, layers, gamma, temperature):
        self.unet, self.cond, self.gamma, self.temperature = unet, cond, gamma, temperature
        self.record, self.inject, self.calls = None, None, []
        self.modules = {name: unet.get_submodule(name) for name in layers}
        self.saved = {name: m.processor for name, m in self.modules.items()}
        for name, module in self.modules.items():
            module.set_processor(AuthorsAttention(name, self))

    def __call__(self, x, t, record=None, inject=None):
        self.record, self.inject = record, inject
        out = self.unet(x, t, encoder_hidden_states=self.cond.expand(x.shape[0], -1, -1)).sample
        self.calls.append((int(t), x.clone(), out.clone(), inject is not None))
        self.record = self.inject = None
        return out

    def close(self):
        for name, module in self.modules.items():
            module.set_processor(self.saved[name])


def original(unet, cond, alphas_cumprod, z_content, z_style, layers, *, steps=50, gamma=0.75, temperature=1.5,
             adain_init=True):
    """run_styleid.py's main() for one content and one style (start_step = steps - 1, its 49 at 50 steps)."""
    alphas = alphas_cumprod.double()
    run = _Run(unet, cond, layers, gamma, temperature)
    ddpm_steps = alphas.shape[0]
    c = ddpm_steps // steps
    try:
        def encode_ddim(x):  # DDIMSampler.encode_ddim + reverse_ddim, eta 0, no guidance
            time_steps = list(range(1, ddpm_steps, c))
            next_steps = list(range(1, ddpm_steps + c, c))
            next_steps[-1] = 999
            feats = {}
            for i, t in enumerate(time_steps):
                feats[t] = {}
                e_t = run(x, t, record=feats[t])
                a_t, a_next = alphas[t], alphas[next_steps[i + 1]]
                pred_x0 = (x - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
                x = a_next.sqrt() * pred_x0 + (1 - a_next).sqrt() * e_t
            return x, feats

        def adain(cnt, sty):  # run_styleid.py adain(): torch.std (unbiased), no epsilon
            cnt_mean, cnt_std = cnt.mean(dim=[0, 2, 3], keepdim=True), cnt.std(dim=[0, 2, 3], keepdim=True)
            sty_mean, sty_std = sty.mean(dim=[0, 2, 3], keepdim=True), sty.std(dim=[0, 2, 3], keepdim=True)
            return ((cnt - cnt_mean) / cnt_std) * sty_std + sty_mean

        sty_z_enc, sty_feat = encode_ddim(z_style)
        cnt_z_enc, cnt_feat = encode_ddim(z_content)
        ddim_timesteps = [s + 1 for s in range(0, ddpm_steps, c)]  # make_ddim_timesteps("uniform")
        ddim_alphas = [alphas[t] for t in ddim_timesteps]
        ddim_alphas_prev = [alphas[0]] + ddim_alphas[:-1]
        start_step = steps - 1
        img = adain(cnt_z_enc, sty_z_enc) if adain_init else cnt_z_enc
        for i, step in enumerate(reversed(ddim_timesteps)):  # DDIMSampler.ddim_sampling
            index = steps - i - 1
            if index >= start_step:
                continue
            inject = None
            if i >= steps - start_step:  # feat_merge: content q, style k and v at the same timestep
                inject = {n: (cnt_feat[step][n][0], sty_feat[step][n][1], sty_feat[step][n][2]) for n in layers}
            e_t = run(img, step, inject=inject)
            a_t, a_prev = ddim_alphas[index], ddim_alphas_prev[index]
            pred_x0 = (img - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
            img = a_prev.sqrt() * pred_x0 + (1 - a_prev).sqrt() * e_t
        return img, run.calls
    finally:
        run.close()


def port(unet, cond, scheduler, z_content, z_style, layers, *, steps=20, gamma=0.75, temperature=1.5,
         v_prediction=False, adain_init=True):
    """run_styleid_diffusers.py's __main__ for one content and one style, with its DDIMScheduler."""
    scheduler.set_timesteps(steps)
    alphas = scheduler.alphas_cumprod.double()
    run = _Run(unet, cond, layers, gamma, temperature)
    try:
        def invert_process(cur_latent):
            feats = {}
            for t in reversed(scheduler.timesteps):
                t = int(t)
                feats[t] = {}
                noise_pred = run(cur_latent, t, record=feats[t])
                current_t = max(0, t - (1000 // steps))
                alpha_t, alpha_t_next = alphas[current_t], alphas[t]
                if v_prediction:  # the sd_version == "2.1" branch
                    beta_t = 1 - alpha_t
                    pred_original_sample = alpha_t.sqrt() * cur_latent - beta_t.sqrt() * noise_pred
                    pred_epsilon = alpha_t.sqrt() * noise_pred + beta_t.sqrt() * cur_latent
                    cur_latent = alpha_t_next.sqrt() * pred_original_sample + (1 - alpha_t_next).sqrt() * pred_epsilon
                else:
                    cur_latent = ((cur_latent - (1 - alpha_t).sqrt() * noise_pred) * (alpha_t_next.sqrt() / alpha_t.sqrt())
                                  + (1 - alpha_t_next).sqrt() * noise_pred)
            return cur_latent, feats

        style_latent, style_features = invert_process(z_style)
        content_latent, content_features = invert_process(z_content)
        if adain_init:
            latent = ((content_latent - content_latent.mean(dim=(2, 3), keepdim=True))
                      / (content_latent.std(dim=(2, 3), keepdim=True) + 1e-4)
                      * style_latent.std(dim=(2, 3), keepdim=True) + style_latent.mean(dim=(2, 3), keepdim=True))
        else:
            latent = content_latent
        for t in scheduler.timesteps:  # reverse_process: every step injected
            t = int(t)
            inject = {n: (content_features[t][n][0], style_features[t][n][1], style_features[t][n][2])
                      for n in layers}
            noise = run(latent, t, inject=inject)
            latent = scheduler.step(noise, t, latent).prev_sample
        return latent, run.calls
    finally:
        run.close()


def port_layer_names(indices) -> list[str]:
    """stable_diffusion.py get_unet_layers(): decoder layer i is up_blocks[i // 3].attentions[i % 3]."""
    return [f"up_blocks.{i // 3}.attentions.{i % 3}.transformer_blocks.0.attn1" for i in indices]


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


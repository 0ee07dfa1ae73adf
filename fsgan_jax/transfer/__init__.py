"""Transfer from a source GAN pretrained on a large domain to a few-shot target (CDC, EWC, MineGAN)."""

"""plugtalk: FixTalk's EMI and EDI as plug-and-play modules for GAN talking-head animators."""

__version__ = "0.1.0"

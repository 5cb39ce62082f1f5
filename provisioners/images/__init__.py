"""Platform images built from Debian packages (debootstrap, then one folder per image)."""

"""The marketplace: signed, versioned capsule and persona packages, a registry, search,
dependency-resolving install and federation between Soma instances (docs/marketplace.md)."""

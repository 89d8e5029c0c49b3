"""Fetching the published corpus: the Hyper-400K product list, where each era's products are
distributed, the manifests that download them, and what a build of them will cost."""

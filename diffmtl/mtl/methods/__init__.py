"""One MTL method per module; the package diffmtl.mtl exports their constructors and weightings."""

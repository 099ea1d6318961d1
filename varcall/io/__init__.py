"""Reading and writing files: BAM decoding, alignment indexes, VCF, VCF Zarr."""

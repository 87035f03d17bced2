"""The application floor of napari-nestnet: everything that touches files, processes and entry points.

Here live file I/O (images through SimpleITK, tifffile, scikit-image and NumPy; JSON records; atomic
writes), model checkpoints, mesh files, run records, process set-up (the memory allocator), and the
command line and batch (Dask) runners built on them.  The science floor — :mod:`reconstruct`'s grid,
operators, fit, tasks, occupancy, metrics and friends — never imports this package: it works on arrays
and meshes in memory.

Modules:

- :mod:`reconstruct.app.files`: atomic writes, JSON records, output-path checks, one-line errors, versions;
- :mod:`reconstruct.app.meta`: :class:`~reconstruct.app.meta.ImageMeta` and the output-geometry rules;
- :mod:`reconstruct.app.images`: ``read_image``/``write_image`` for every supported format;
- :mod:`reconstruct.app.checkpoints`: model checkpoints loaded with ``weights_only=True``;
- :mod:`reconstruct.app.monai_reader`: ``SimpleITKReader`` for MONAI ``LoadImage`` pipelines;
- :mod:`reconstruct.app.meshes`: reading meshes and writing fitted surfaces;
- :mod:`reconstruct.app.runtime`: allocator set-up at process start.

Nothing is imported here eagerly, so ``import reconstruct.app.files`` pulls in neither SimpleITK,
Dask nor napari.
"""

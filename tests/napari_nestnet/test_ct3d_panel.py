"""The 3-D CT panel: fields from the spec, angles from the layer, result layers with the volume's scale."""

from __future__ import annotations

import numpy as np
import torch

from napari_nestnet._widgets import CT3DReconstructionPanel


def test_ct3d_panel_reconstructs_a_stack_into_scaled_volume_layers(viewer, dock, run_panel):
    from reconstruct.projectors import ParallelBeam2D

    angles = np.linspace(0.0, 180.0, 12, endpoint=False)
    volume = np.zeros((4, 12, 12), np.float32)
    volume[:, 3:9, 4:8] = 1.0
    sino = ParallelBeam2D((12, 12), np.deg2rad(angles), 12)(torch.from_numpy(volume).double()).numpy()
    viewer.add_image(sino.astype(np.float32), name="stack")
    panel = dock(CT3DReconstructionPanel, steps=3, slice_spacing=2.5)
    assert panel.angles_deg().tolist() == angles.tolist()  # count from the layer's angle axis, 0:180
    panel.field("geometry").value = "cone"
    assert panel.angles_deg().size == 4 and panel.angles_deg()[-1] == 270.0  # views on axis 0, over 0:360
    panel.field("geometry").value = "parallel"

    run_panel(panel)

    recon, fbp = panel.last_layers
    assert recon.data.shape == fbp.data.shape == (4, 12, 12)
    assert tuple(recon.scale) == tuple(fbp.scale) == (2.5, 1.0, 1.0)
    assert tuple(recon.translate) == (-3.75, -5.5, -5.5)
    assert recon.metadata["parameters"]["task"] == "ct_reconstruct_3d"
    assert recon.metadata["inputs"]["projections"] == "stack"

-- topology_version: the mesh's topology version (one row).
SELECT version FROM mesh_topology

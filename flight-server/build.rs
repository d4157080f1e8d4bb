fn main() {
    // Without an rpath the loader silently picks the system libpython with the same soname.
    pyo3_build_config::add_libpython_rpath_link_args();
}

//! Writes every target's generated seeds under the folder given (`<folder>/<target>/<name>`).

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .expect("usage: seeds FOLDER");
    for (target, name, bytes) in fuzz::seeds() {
        let folder = dir.join(target);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join(name), bytes)?;
    }
    Ok(())
}

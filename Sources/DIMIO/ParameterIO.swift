import Foundation
import DIMCore

extension HDF5File {
    /// Reads `group/<name>` for every parameter of `store` (with `rename` mapping our names to the
    /// file's), checking each shape. Missing tensors are an error unless `allowMissing`.
    public func loadParameters(_ store: ParameterStore, group: String, rename: (String) -> String = { $0 },
                               allowMissing: Bool = false) throws {
        for p in store.parameters {
            let key = "\(group)/\(rename(p.name))"
            if !exists(key) {
                if allowMissing { continue }
                throw DIMError("\(path): missing parameter '\(key)'")
            }
            let (values, shape): ([Float], [Int]) = try read(key)
            guard shape == p.shape else {
                throw DIMError("\(path): '\(key)' has shape \(shape), the model expects \(p.shape)")
            }
            values.withUnsafeBufferPointer { p.value.data.update(from: $0.baseAddress!, count: p.count) }
        }
    }

    /// Writes every parameter of `store` under `group/<name>` with its PyTorch shape.
    public func saveParameters(_ store: ParameterStore, group: String,
                               from values: UnsafePointer<Float>? = nil) throws {
        guard let base = values ?? store.values.map({ UnsafePointer($0) }) else { return }
        for p in store.parameters {
            try write("\(group)/\(p.name)", UnsafeBufferPointer(start: base + p.offset, count: p.count), shape: p.shape)
        }
    }
}

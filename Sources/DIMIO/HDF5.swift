import Foundation
import CHDF5
import DIMCore

/// A small HDF5 wrapper: files, groups, datasets and attributes of numbers and strings. Every
/// failure becomes a DIMError naming the file and the object.
public final class HDF5File {
    public let path: String
    let id: hid_t

    /// `memory`: a new file held in memory (HDF5's core driver), written out by `writeImage`.
    public enum Mode { case read, create, readWrite, memory }

    public init(_ path: String, mode: Mode = .read) throws {
        dim_H5_silence_errors()
        self.path = path
        switch mode {
        case .read:
            guard access(path, F_OK) == 0 else { throw DIMError("\(path): no such file") }
            guard H5Fis_hdf5(path) > 0 else { throw DIMError("\(path): not an HDF5 file") }
            id = H5Fopen(path, dim_H5F_ACC_RDONLY(), dim_H5P_DEFAULT())
        case .readWrite:
            id = H5Fopen(path, dim_H5F_ACC_RDWR(), dim_H5P_DEFAULT())
        case .create:
            id = H5Fcreate(path, dim_H5F_ACC_TRUNC(), dim_H5P_DEFAULT(), dim_H5P_DEFAULT())
        case .memory:
            let fapl = H5Pcreate(dim_H5P_FILE_ACCESS())
            defer { H5Pclose(fapl) }
            H5Pset_fapl_core(fapl, 16 << 20, false)  // grow 16 MB at a time; no backing file
            id = H5Fcreate(path, dim_H5F_ACC_TRUNC(), dim_H5P_DEFAULT(), fapl)
        }
        if id < 0 { throw DIMError("\(path): cannot open as HDF5 (damaged or unreadable)") }
    }

    // At process exit HDF5 may already have closed every id (its own atexit handler).
    deinit { if id >= 0 && H5Iis_valid(id) > 0 { H5Fclose(id) } }

    /// Flushes HDF5's buffers to the operating system.
    public func flush() { H5Fflush(id, H5F_SCOPE_GLOBAL) }

    /// Writes a `.memory` file's bytes to `path` with plain write(2) and fsync(2). HDF5 never
    /// touches the disk itself, so a full disk or a failing write is an ordinary error here (when
    /// HDF5 wrote and then failed to close a file, its exit-time clean-up crashed).
    public func writeImage(to path: String) throws {
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0 else { throw DIMError("\(path): HDF5 could not flush the file "
            + "image") }
        let size = H5Fget_file_image(id, nil, 0)
        guard size > 0 else { throw DIMError("\(path): HDF5 could not size the file image") }
        var image = [UInt8](repeating: 0, count: size)
        guard H5Fget_file_image(id, &image,
                                size) == size else { throw DIMError("\(path): HDF5 could not copy the file image") }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw DIMError("\(path): cannot create (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var done = 0
        while done < size {
            let n = image.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, size - done) }
            guard n > 0 else { throw DIMError("\(path): cannot write (\(String(cString: strerror(errno))))") }
            done += n
        }
        guard fsync(fd) == 0 else { throw DIMError("\(path): cannot write (fsync: "
            + "\(String(cString: strerror(errno))))") }
    }

    public func exists(_ name: String) -> Bool {
        // Check each prefix: H5Lexists fails on a path whose parent is missing.
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += (prefix.isEmpty ? "" : "/") + part
            if H5Lexists(id, prefix, dim_H5P_DEFAULT()) <= 0 { return false }
        }
        return true
    }

    /// Names of the members of a group, in HDF5's (alphabetical) order.
    public func members(_ group: String) throws -> [String] {
        let g = H5Gopen2(id, group, dim_H5P_DEFAULT())
        if g < 0 { throw DIMError("\(path): no group '\(group)'") }
        defer { H5Gclose(g) }
        var info = H5G_info_t()
        H5Gget_info(g, &info)
        var names: [String] = []
        for i in 0..<info.nlinks {
            let len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, dim_H5P_DEFAULT())
            if len < 0 { continue }
            var buf = [CChar](repeating: 0, count: Int(len) + 1)
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(len) + 1, dim_H5P_DEFAULT())
            names.append(String(cString: buf))
        }
        return names
    }

    public func createGroups(for name: String) {
        let parts = name.split(separator: "/").dropLast()
        var prefix = ""
        for part in parts {
            prefix += (prefix.isEmpty ? "" : "/") + part
            if H5Lexists(id, prefix, dim_H5P_DEFAULT()) <= 0 {
                let g = H5Gcreate2(id, prefix, dim_H5P_DEFAULT(), dim_H5P_DEFAULT(), dim_H5P_DEFAULT())
                H5Gclose(g)
            }
        }
    }

    // MARK: datasets

    public func shape(_ name: String) throws -> [Int] {
        let d = try openDataset(name)
        defer { H5Dclose(d) }
        return dataspaceShape(H5Dget_space(d))
    }

    func openDataset(_ name: String) throws -> hid_t {
        guard exists(name) else { throw DIMError("\(path): missing dataset '\(name)'") }
        let d = H5Dopen2(id, name, dim_H5P_DEFAULT())
        if d < 0 { throw DIMError("\(path): '\(name)' is not a dataset") }
        return d
    }

    func dataspaceShape(_ space: hid_t) -> [Int] {
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        if rank <= 0 { return [] }
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(space, &dims, nil)
        return dims.map { Int($0) }
    }

    /// Reads a whole dataset, converted by HDF5 to the native type of T.
    public func read<T: HDF5Scalar>(_ name: String, as: T.Type = T.self) throws -> (values: [T], shape: [Int]) {
        let d = try openDataset(name)
        defer { H5Dclose(d) }
        let shape = dataspaceShape(H5Dget_space(d))
        let count = shape.reduce(1, *)
        var values = [T](repeating: T.zero, count: count)
        if count > 0 {
            let status = values.withUnsafeMutableBytes {
                H5Dread(d, T.hdf5Type, dim_H5S_ALL(), dim_H5S_ALL(), dim_H5P_DEFAULT(), $0.baseAddress)
            }
            if status < 0 { throw DIMError("\(path): cannot read dataset '\(name)' (damaged file or wrong type)") }
        }
        return (values, shape)
    }

    /// Writes a dataset (creating parent groups). `chunkRows` > 0 makes it chunked by rows.
    public func write<T: HDF5Scalar>(_ name: String, _ values: UnsafeBufferPointer<T>, shape: [Int],
                                     chunkRows: Int = 0) throws {
        precondition(shape.reduce(1, *) == values.count,
                     "HDF5 write \(name): \(values.count) values for shape \(shape)")
        createGroups(for: name)
        var dims = shape.map { hsize_t($0) }
        let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil)
        defer { H5Sclose(space) }
        let plist = H5Pcreate(dim_H5P_DATASET_CREATE())
        defer { H5Pclose(plist) }
        if chunkRows > 0, !shape.isEmpty, shape[0] > 0 {
            var chunk = dims
            chunk[0] = hsize_t(min(chunkRows, shape[0]))
            H5Pset_chunk(plist, Int32(shape.count), &chunk)
        }
        let d = H5Dcreate2(id, name, T.hdf5Type, space, dim_H5P_DEFAULT(), plist, dim_H5P_DEFAULT())
        if d < 0 { throw DIMError("\(path): cannot create dataset '\(name)'") }
        defer { H5Dclose(d) }
        if values.count > 0, H5Dwrite(d, T.hdf5Type, dim_H5S_ALL(), dim_H5S_ALL(), dim_H5P_DEFAULT(),
                                      values.baseAddress) < 0 {
            throw DIMError("\(path): cannot write dataset '\(name)'")
        }
    }

    public func write<T: HDF5Scalar>(_ name: String, _ values: [T], shape: [Int]? = nil, chunkRows: Int = 0) throws {
        try values.withUnsafeBufferPointer { try write(name, $0, shape: shape ?? [values.count], chunkRows: chunkRows) }
    }

    // MARK: attributes (on the root group unless `object` names another)

    public func hasAttribute(_ name: String, object: String = "/") -> Bool {
        H5Aexists_by_name(id, object, name, dim_H5P_DEFAULT()) > 0
    }

    public func attribute<T: HDF5Scalar>(_ name: String, object: String = "/", as: T.Type = T.self) throws -> [T] {
        guard hasAttribute(name,
                           object: object) else { throw DIMError("\(path): missing attribute '\(name)' on \(object)") }
        let a = H5Aopen_by_name(id, object, name, dim_H5P_DEFAULT(), dim_H5P_DEFAULT())
        if a < 0 { throw DIMError("\(path): cannot open attribute '\(name)'") }
        defer { H5Aclose(a) }
        let shape = dataspaceShape(H5Aget_space(a))
        var values = [T](repeating: T.zero, count: shape.reduce(1, *))
        let status = values.withUnsafeMutableBytes { H5Aread(a, T.hdf5Type, $0.baseAddress) }
        if status < 0 { throw DIMError("\(path): attribute '\(name)' is not numeric") }
        return values
    }

    public func scalarAttribute<T: HDF5Scalar>(_ name: String, object: String = "/", as: T.Type = T.self) throws -> T {
        let v: [T] = try attribute(name, object: object)
        guard let first = v.first else { throw DIMError("\(path): attribute '\(name)' is empty") }
        return first
    }

    public func stringAttribute(_ name: String, object: String = "/") throws -> String {
        guard hasAttribute(name,
                           object: object) else { throw DIMError("\(path): missing attribute '\(name)' on \(object)") }
        let a = H5Aopen_by_name(id, object, name, dim_H5P_DEFAULT(), dim_H5P_DEFAULT())
        defer { H5Aclose(a) }
        let ftype = H5Aget_type(a)
        defer { H5Tclose(ftype) }
        guard H5Tget_class(ftype) == H5T_STRING else { throw DIMError("\(path): attribute '\(name)' is not a string") }
        if H5Tis_variable_str(ftype) > 0 {
            let mtype = H5Tcopy(dim_H5T_C_S1())
            H5Tset_size(mtype, Int(bitPattern: UInt(bitPattern: -1)))  // H5T_VARIABLE
            H5Tset_cset(mtype, H5Tget_cset(ftype))
            defer { H5Tclose(mtype) }
            var ptr: UnsafeMutablePointer<CChar>? = nil
            H5Aread(a, mtype, &ptr)
            defer { if let p = ptr { free(p) } }
            return ptr.map { String(cString: $0) } ?? ""
        }
        let size = H5Tget_size(ftype)
        var buf = [CChar](repeating: 0, count: size + 1)
        let mtype = H5Tcopy(dim_H5T_C_S1())
        H5Tset_size(mtype, size + 1)  // room for the terminator, or HDF5 drops the last character
        H5Tset_cset(mtype, H5Tget_cset(ftype))
        defer { H5Tclose(mtype) }
        H5Aread(a, mtype, &buf)
        return String(cString: buf)
    }

    public func setAttribute<T: HDF5Scalar>(_ name: String, _ values: [T], object: String = "/",
                                            scalar: Bool = false) throws {
        if hasAttribute(name, object: object) { H5Adelete_by_name(id, object, name, dim_H5P_DEFAULT()) }
        var dims = [hsize_t(values.count)]
        let space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil)
        defer { H5Sclose(space) }
        let a = H5Acreate_by_name(id, object, name, T.hdf5Type, space, dim_H5P_DEFAULT(), dim_H5P_DEFAULT(),
                                  dim_H5P_DEFAULT())
        if a < 0 { throw DIMError("\(path): cannot write attribute '\(name)'") }
        defer { H5Aclose(a) }
        _ = values.withUnsafeBytes { H5Awrite(a, T.hdf5Type, $0.baseAddress) }
    }

    public func setAttribute<T: HDF5Scalar>(_ name: String, _ value: T, object: String = "/") throws {
        try setAttribute(name, [value], object: object, scalar: true)
    }

    public func setAttribute(_ name: String, _ value: String, object: String = "/") throws {
        if hasAttribute(name, object: object) { H5Adelete_by_name(id, object, name, dim_H5P_DEFAULT()) }
        let bytes = Array(value.utf8)
        let t = H5Tcopy(dim_H5T_C_S1())
        H5Tset_size(t, max(bytes.count, 1))
        H5Tset_strpad(t, H5T_STR_NULLPAD)
        defer { H5Tclose(t) }
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let a = H5Acreate_by_name(id, object, name, t, space, dim_H5P_DEFAULT(), dim_H5P_DEFAULT(), dim_H5P_DEFAULT())
        if a < 0 { throw DIMError("\(path): cannot write attribute '\(name)'") }
        defer { H5Aclose(a) }
        var buf = bytes.isEmpty ? [UInt8(0)] : bytes
        H5Awrite(a, t, &buf)
    }
}

/// Element types HDF5 converts to and from.
public protocol HDF5Scalar {
    static var hdf5Type: hid_t { get }
    static var zero: Self { get }
}
extension Float: HDF5Scalar { public static var hdf5Type: hid_t { dim_H5T_NATIVE_FLOAT() } }
extension Double: HDF5Scalar { public static var hdf5Type: hid_t { dim_H5T_NATIVE_DOUBLE() } }
extension UInt8: HDF5Scalar { public static var hdf5Type: hid_t { dim_H5T_NATIVE_UINT8() } }
extension Int64: HDF5Scalar { public static var hdf5Type: hid_t { dim_H5T_NATIVE_INT64() } }
extension Int32: HDF5Scalar { public static var hdf5Type: hid_t { dim_H5T_NATIVE_INT32() } }

extension HDF5File {
    /// Reads the rows `rows` (sorted ascending, no duplicates) of a dataset whose first dimension
    /// is the row index, in that order, with one H5Dread over a union of hyperslabs (consecutive
    /// rows become one block).
    public func readRowSet<T: HDF5Scalar>(_ name: String, rows: [Int], into buffer: UnsafeMutablePointer<T>) throws {
        guard !rows.isEmpty else { return }
        let d = try openDataset(name)
        defer { H5Dclose(d) }
        let fileSpace = H5Dget_space(d)
        defer { H5Sclose(fileSpace) }
        let rank = Int(H5Sget_simple_extent_ndims(fileSpace))
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(fileSpace, &dims, nil)
        guard let last = rows.last, last < Int(dims[0]), rows[0] >= 0 else {
            throw DIMError("\(path): row \(rows.last ?? -1) outside '\(name)' of \(dims.first ?? 0) rows")
        }
        var first = true
        var i = 0
        while i < rows.count {
            var j = i
            while j + 1 < rows.count && rows[j + 1] == rows[j] + 1 { j += 1 }
            var offset = [hsize_t](repeating: 0, count: rank)
            offset[0] = hsize_t(rows[i])
            var count = dims
            count[0] = hsize_t(j - i + 1)
            H5Sselect_hyperslab(fileSpace, first ? H5S_SELECT_SET : H5S_SELECT_OR, &offset, nil, &count, nil)
            first = false
            i = j + 1
        }
        var memDims = dims
        memDims[0] = hsize_t(rows.count)
        let memSpace = H5Screate_simple(Int32(rank), &memDims, nil)
        defer { H5Sclose(memSpace) }
        if H5Dread(d, T.hdf5Type, memSpace, fileSpace, dim_H5P_DEFAULT(), buffer) < 0 {
            throw DIMError("\(path): cannot read rows of '\(name)' (damaged file?)")
        }
    }
}

extension HDF5File {
    /// Removes an attribute of the root group (or of `object`).
    public func deleteAttribute(_ name: String, object: String = "/") throws {
        guard H5Adelete_by_name(id, object, name, dim_H5P_DEFAULT()) >= 0 else {
            throw DIMError("\(path): cannot delete attribute '\(name)' of \(object)")
        }
    }
}

import Foundation
import DIMCore

/// An HDF5 checkpoint, written by rank 0: parameters under `/params` with PyTorch names and shapes
/// (docs/design.md §9), BatchNorm buffers under `/buffers` (running_mean, running_var,
/// num_batches_tracked), Adam moments under `/adam/{m,v}/<name>`, the discriminator and its Adam
/// under `/prior_disc_params` and `/prior_disc_adam/{m,v}`, and the run's state and configuration
/// as root attributes. What a checkpoint holds is listed once, in `tensorGroups` and `fields`: the
/// writer, the reader and `checkpoint diff` all go through those two tables.
public enum CheckpointFile {
    public static let formatVersion = "dim-dist-checkpoint/1"

    /// Every group of tensors, in the order they are written and compared.
    public static let tensorGroups = ["params", "buffers", "adam/m", "adam/v",
                                      "prior_disc_params", "prior_disc_adam/m", "prior_disc_adam/v"]

    /// What a checkpoint says about the run besides tensors (one root attribute per field).
    public struct Info {
        public var step = 0
        public var epoch = 0
        public var batchInEpoch = 0
        public var seed: UInt64 = 0
        public var globalBatch = 0
        public var ranks = 1
        public var adamStep = 0
        public var discAdamStep = 0
        public var loss = 0.0
        public var configJSON = ""
        public var datasetFingerprint = ""
        public var datasetCount = 0
        public var format = CheckpointFile.formatVersion
        public var created = ""
        public init() {}
    }

    /// An attribute's value as stored.
    public enum Value: Equatable, CustomStringConvertible {
        case int(Int64), double(Double), string(String)
        public var description: String {
            switch self {
            case .int(let v): return String(v)
            case .double(let v): return String(v)
            case .string(let v): return v
            }
        }
    }

    /// One root attribute and the Info field it holds.
    public struct Field {
        /// `state`: what the next step is computed from (the step, the data position, the random
        /// streams' seed, both optimisers' counters, the configuration, the dataset); two runs
        /// that computed the same agree on it. `record`: about the writing (ranks, time, last loss).
        public enum Role { case state, record }
        public let name: String
        public let role: Role
        /// Files written before the field existed read it as the Info default.
        public let optional: Bool
        public let get: (Info) -> Value
        let set: (inout Info, Value) -> Void

        static func int(_ name: String, _ key: WritableKeyPath<Info, Int>, _ role: Role) -> Field {
            Field(name: name, role: role, optional: false, get: { .int(Int64($0[keyPath: key])) },
                  set: { info, v in if case .int(let x) = v { info[keyPath: key] = Int(x) } })
        }
        static func bits(_ name: String, _ key: WritableKeyPath<Info, UInt64>, _ role: Role) -> Field {
            Field(name: name, role: role, optional: false, get: { .int(Int64(bitPattern: $0[keyPath: key])) },
                  set: { info, v in if case .int(let x) = v { info[keyPath: key] = UInt64(bitPattern: x) } })
        }
        static func double(_ name: String, _ key: WritableKeyPath<Info, Double>, _ role: Role) -> Field {
            Field(name: name, role: role, optional: false, get: { .double($0[keyPath: key]) },
                  set: { info, v in if case .double(let x) = v { info[keyPath: key] = x } })
        }
        static func string(_ name: String, _ key: WritableKeyPath<Info, String>, _ role: Role,
                           optional: Bool = false) -> Field {
            Field(name: name, role: role, optional: optional, get: { .string($0[keyPath: key]) },
                  set: { info, v in if case .string(let x) = v { info[keyPath: key] = x } })
        }

        func write(_ info: Info, to f: HDF5File) throws {
            switch get(info) {
            case .int(let v): try f.setAttribute(name, v)
            case .double(let v): try f.setAttribute(name, v)
            case .string(let v): try f.setAttribute(name, v)
            }
        }

        func read(_ f: HDF5File, into info: inout Info) throws {
            if optional && !f.hasAttribute(name) { return }
            switch get(info) {
            case .int: set(&info, .int(try f.scalarAttribute(name, as: Int64.self)))
            case .double: set(&info, .double(try f.scalarAttribute(name, as: Double.self)))
            case .string: set(&info, .string(try f.stringAttribute(name)))
            }
        }
    }

    /// Every root attribute of Info (besides `parameter_count`, `checksum` and `complete`, which
    /// check the file itself).
    public static let fields: [Field] = [
        .string("format", \.format, .state),
        .int("step", \.step, .state),
        .int("epoch", \.epoch, .state),
        .int("batch_in_epoch", \.batchInEpoch, .state),
        .bits("seed", \.seed, .state),
        .int("global_batch", \.globalBatch, .state),
        .int("adam_step", \.adamStep, .state),
        .int("prior_disc_adam_step", \.discAdamStep, .state),
        .string("config", \.configJSON, .state),
        .string("dataset_fingerprint", \.datasetFingerprint, .state),
        .int("dataset_count", \.datasetCount, .state),
        .int("ranks", \.ranks, .record),
        .double("loss", \.loss, .record),
        .string("created", \.created, .record, optional: true),
    ]

    /// Writes `path` directly (CheckpointDirectory.save wraps it in the crash-safe sequence).
    /// `extra` adds what a derived file carries besides (a fine-tuned classifier's head).
    public static func write(path: String, model: DIMModel, adam: Adam, discAdam: Adam, info: Info,
                             extra: ((HDF5File) throws -> Void)? = nil) throws {
        // Built in memory and written out in one piece (see HDF5File.writeImage).
        let f = try HDF5File(path, mode: .memory)
        try f.saveParameters(model.params, group: "params")
        try f.saveParameters(model.discParams, group: "prior_disc_params")
        try writeBuffers(f, model)
        try writeMoments(f, store: model.params, adam: adam, group: "adam")
        try writeMoments(f, store: model.discParams, adam: discAdam, group: "prior_disc_adam")
        for field in fields { try field.write(info, to: f) }
        try f.setAttribute("parameter_count", Int64(model.params.count))
        try f.setAttribute("checksum", tensorChecksum(model: model, adam: adam, discAdam: discAdam))
        try extra?(f)
        // Written last: a file without it was interrupted.
        try f.setAttribute("complete", Int64(1))
        try f.writeImage(to: path)
    }

    private static func writeBuffers(_ f: HDF5File, _ model: DIMModel) throws {
        try f.saveParameters(model.buffers, group: "buffers")
        for bn in model.batchNorms {
            try f.write("buffers/\(bn.name).num_batches_tracked", [Int64(bn.batchesTracked)], shape: [])
        }
    }

    private static func writeMoments(_ f: HDF5File, store: ParameterStore, adam: Adam, group: String) throws {
        for p in store.parameters {
            try f.write("\(group)/m/\(p.name)", UnsafeBufferPointer(start: adam.m + p.offset, count: p.count),
                        shape: p.shape)
            try f.write("\(group)/v/\(p.name)", UnsafeBufferPointer(start: adam.v + p.offset, count: p.count),
                        shape: p.shape)
        }
    }

    public static func readInfo(_ f: HDF5File) throws -> Info {
        var info = Info()
        guard f.hasAttribute("format") else { throw DIMError("\(f.path): not a dim-dist checkpoint (no format "
            + "attribute)") }
        info.format = try f.stringAttribute("format")
        guard info.format.hasPrefix("dim-dist-checkpoint/") else {
            throw DIMError("\(f.path): not a dim-dist checkpoint (format '\(info.format)')")
        }
        guard info.format == formatVersion else {
            throw DIMError("\(f.path): unknown checkpoint format '\(info.format)' (this build reads \(formatVersion))")
        }
        guard f.hasAttribute("complete") else { throw DIMError("\(f.path): incomplete checkpoint (the write was "
            + "interrupted)") }
        for field in fields where field.name != "format" { try field.read(f, into: &info) }
        return info
    }

    /// Loads tensors into a model whose configuration was already checked.
    public static func load(_ f: HDF5File, model: DIMModel, adam: Adam, discAdam: Adam, info: Info) throws {
        try f.loadParameters(model.params, group: "params")
        try f.loadParameters(model.discParams, group: "prior_disc_params")
        try f.loadParameters(model.buffers, group: "buffers")
        for bn in model.batchNorms {
            let (v, _): ([Int64], [Int]) = try f.read("buffers/\(bn.name).num_batches_tracked")
            bn.batchesTracked = Int(v.first ?? 0)
        }
        try loadMoments(f, store: model.params, adam: adam, group: "adam")
        try loadMoments(f, store: model.discParams, adam: discAdam, group: "prior_disc_adam")
        adam.restore(step: info.adamStep)
        discAdam.restore(step: info.discAdamStep)
        let expected = try f.stringAttribute("checksum")
        let actual = tensorChecksum(model: model, adam: adam, discAdam: discAdam)
        guard expected == actual else {
            throw DIMError("\(f.path): corrupted checkpoint (tensor checksum \(actual), file says \(expected))")
        }
    }

    /// CRC-32 of every tensor a checkpoint holds, in a fixed order.
    static func tensorChecksum(model: DIMModel, adam: Adam, discAdam: Adam) -> String {
        var crc = CRC32()
        func add(_ p: UnsafeMutablePointer<Float>?, _ n: Int) {
            if let p = p, n > 0 { crc.update(UnsafeRawBufferPointer(start: p, count: n * 4)) }
        }
        add(model.params.values, model.params.count)
        add(model.discParams.values, model.discParams.count)
        add(model.buffers.values, model.buffers.count)
        add(adam.m, adam.count); add(adam.v, adam.count)
        add(discAdam.m, discAdam.count); add(discAdam.v, discAdam.count)
        var tracked = model.batchNorms.map { Int64($0.batchesTracked) }
        tracked.withUnsafeMutableBytes { crc.update(UnsafeRawBufferPointer($0)) }
        return crc.hex
    }

    private static func loadMoments(_ f: HDF5File, store: ParameterStore, adam: Adam, group: String) throws {
        for p in store.parameters {
            for (kind, dst) in [("m", adam.m), ("v", adam.v)] {
                let key = "\(group)/\(kind)/\(p.name)"
                let (vals, shape): ([Float], [Int]) = try f.read(key)
                guard shape == p.shape else { throw DIMError("\(f.path): '\(key)' has shape \(shape), expected "
                    + "\(p.shape)") }
                vals.withUnsafeBufferPointer { (dst + p.offset).update(from: $0.baseAddress!, count: p.count) }
            }
        }
    }
}

/// The checkpoint directory: `ckpt-<step>.h5` files, a `latest` pointer, and the crash-safe write
/// sequence (temporary file in the same directory, fsync, rename, then the pointer).
public struct CheckpointDirectory {
    public let path: String
    public var keep = 3

    public init(path: String, keep: Int = 3) { self.path = path; self.keep = keep }

    public static func fileName(step: Int) -> String {
        let s = String(step)
        return "ckpt-" + String(repeating: "0", count: max(0, 8 - s.count)) + s + ".h5"
    }

    /// Writes a checkpoint so that a crash at any moment leaves the previous one and `latest` intact.
    @discardableResult
    public func save(step: Int, write: (String) throws -> Void) throws -> String {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let name = Self.fileName(step: step)
        let tmp = "\(path)/.\(name).tmp-\(getpid())"
        do {
            try write(tmp)
            try fsyncFile(tmp)
            guard rename(tmp, "\(path)/\(name)") == 0 else { throw DIMError("\(path)/\(name): rename failed "
                + "(\(String(cString: strerror(errno))))") }
            try fsyncFile(path)
            // The pointer: written to a temporary file and renamed, so it is always whole.
            let ptmp = "\(path)/.latest.tmp-\(getpid())"
            guard FileManager.default.createFile(atPath: ptmp, contents: Data((name + "\n").utf8)) else {
                throw DIMError("\(ptmp): cannot write")
            }
            try fsyncFile(ptmp)
            guard rename(ptmp, "\(path)/latest") == 0 else { throw DIMError("\(path)/latest: rename failed") }
            try fsyncFile(path)
        } catch {
            unlink(tmp)
            throw error
        }
        prune()
        return "\(path)/\(name)"
    }

    /// Deletes all but the newest `keep` checkpoints (never the one `latest` names).
    public func prune() {
        let current = latestName()
        for f in names().dropLast(keep) where f != current { unlink("\(path)/\(f)") }
    }

    /// Every complete checkpoint file, oldest first (names are zero-padded steps).
    public func all() -> [String] { names().map { "\(path)/\($0)" } }

    private func names() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
            .filter { $0.hasPrefix("ckpt-") && $0.hasSuffix(".h5") }.sorted()
    }

    public func latestName() -> String? {
        guard let d = FileManager.default.contents(atPath: "\(path)/latest"),
              let s = String(data: d, encoding: .utf8)?.split(separator: "\n").first else { return nil }
        return String(s)
    }

    /// The checkpoint `latest` points to, if any.
    public func latest() -> String? { latestName().map { "\(path)/\($0)" } }
}

func fsyncFile(_ path: String) throws {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw DIMError("\(path): cannot open for fsync") }
    defer { close(fd) }
    if fsync(fd) != 0 && errno != EINVAL { throw DIMError("\(path): fsync failed "
        + "(\(String(cString: strerror(errno))))") }
}

/// `dim-dist checkpoint diff`: every tensor group of `CheckpointFile.tensorGroups` (whether two
/// checkpoints are bit-identical, and the worst relative difference of a tensor, relativeDifference)
/// and every attribute of `CheckpointFile.fields` that differs.
public struct CheckpointComparison {
    public struct Group {
        public let name: String
        public let identical: Bool
        /// The largest relative difference of a tensor (trimmed when `compare(trim:)` > 0).
        public let worst: Double
        public let worstTensor: String
        /// The same over every entry (equal to `worst` without trimming).
        public let worstUntrimmed: Double
        public let worstUntrimmedTensor: String
        /// Tensors of the group left out of `identical` and `worst` (`compare(ignoring:)`).
        public let ignored: [String]
    }
    public struct FieldDifference {
        public let name: String
        public let role: CheckpointFile.Field.Role
        public let a: CheckpointFile.Value, b: CheckpointFile.Value
    }
    public let groups: [Group]
    /// Only the attributes that differ.
    public let fields: [FieldDifference]

    /// True when the two checkpoints are not the same training state: a tensor differs by more
    /// than `tolerance` (relative; 0: any bit), or a state attribute differs at all.
    public func differ(tolerance: Double) -> Bool {
        groups.contains { tolerance == 0 ? !$0.identical : $0.worst > tolerance }
            || fields.contains { $0.role == .state }
    }

    /// `ignoring`: tensor names (in any group) left out of the verdict, such as
    /// `LossConfig.zeroGradientParameters`. `trim`: the fraction of each tensor's entries that
    /// differ most left out of its difference (relativeDifferences).
    public static func compare(_ a: String, _ b: String, ignoring: Set<String> = [],
                               trim: Double = 0) throws -> CheckpointComparison {
        let fa = try HDF5File(a), fb = try HDF5File(b)
        let (ia, ib) = (try CheckpointFile.readInfo(fa), try CheckpointFile.readInfo(fb))
        let fields = CheckpointFile.fields.compactMap { f -> FieldDifference? in
            f.get(ia) == f.get(ib) ? nil : FieldDifference(name: f.name, role: f.role, a: f.get(ia), b: f.get(ib))
        }
        return CheckpointComparison(
            groups: try CheckpointFile.tensorGroups.map { try compare(group: $0, fa, fb, ignoring: ignoring, trim: trim) },
            fields: fields)
    }

    private static func compare(group: String, _ fa: HDF5File, _ fb: HDF5File,
                                ignoring: Set<String>, trim: Double) throws -> Group {
        let names = fa.exists(group) ? try fa.members(group) : []
        let other = fb.exists(group) ? try fb.members(group) : []
        if let missing = Set(names).symmetricDifference(other).sorted().first {
            let (has, lacks) = names.contains(missing) ? (fa, fb) : (fb, fa)
            throw DIMError("\(lacks.path): no '\(group)/\(missing)' (\(has.path) has it): not the same model")
        }
        var worst = (0.0, ""), untrimmed = (0.0, ""), identical = true
        for name in names where !ignoring.contains(name) {
            let key = "\(group)/\(name)"
            let (x, sx): ([Double], [Int]) = try fa.read(key)
            let (y, sy): ([Double], [Int]) = try fb.read(key)
            guard sx == sy else { throw DIMError("'\(key)': shapes \(sx) and \(sy) differ") }
            if x != y { identical = false }
            let (e, t) = relativeDifferences(x, y, trim: trim)
            if e > untrimmed.0 { untrimmed = (e, name) }
            if t > worst.0 { worst = (t, name) }
        }
        return Group(name: group, identical: identical, worst: worst.0, worstTensor: worst.1,
                     worstUntrimmed: untrimmed.0, worstUntrimmedTensor: untrimmed.1,
                     ignored: names.filter { ignoring.contains($0) })
    }
}

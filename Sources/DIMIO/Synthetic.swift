import Foundation
import DIMCore

/// A procedurally generated labelled dataset whose label is visible in the image: class k is a
/// bar at angle k*180°/K through a randomly shifted centre, with random brightness, a random
/// background level and pixel noise. Deterministic in the seed.
public enum SyntheticDataset {
    public static func images(count: Int, classes: Int, channels: Int, size: Int, seed: UInt64, stream: UInt64)
        -> (pixels: [UInt8], labels: [Int]) {
        var rng = SplitMix64(seed: seed, stream: RandomStream.synthetic(split: stream))
        let per = channels * size * size
        var pixels = [UInt8](repeating: 0, count: count * per)
        var labels = [Int](repeating: 0, count: count)
        let half = Double(size) / 2
        for i in 0..<count {
            let k = rng.nextInt(classes)
            labels[i] = k
            let angle = Double.pi * Double(k) / Double(classes)
            let (dx, dy) = (cos(angle), sin(angle))
            let cx = half + Double(rng.uniform(Float(size) / 6)), cy = half + Double(rng.uniform(Float(size) / 6))
            let thickness = 1.0 + Double(rng.nextFloat()) * Double(size) / 16
            let length = Double(size) * (0.3 + 0.15 * Double(rng.nextFloat()))
            let bright = 150 + Double(rng.nextFloat()) * 105
            let background = Double(rng.nextFloat()) * 60
            for y in 0..<size { for x in 0..<size {
                let (px, py) = (Double(x) + 0.5 - cx, Double(y) + 0.5 - cy)
                let along = px * dx + py * dy, across = abs(-px * dy + py * dx)
                let on = across <= thickness && abs(along) <= length
                for c in 0..<channels {
                    let tint = channels == 1 ? 1.0 : 0.6 + 0.4 * Double((k + c) % 3) / 2
                    let noise = Double(rng.uniform(25))
                    let v = (on ? bright * tint : background) + noise
                    pixels[i * per + c * size * size + y * size + x] = UInt8(max(0, min(255, v.rounded())))
                }
            } }
        }
        return (pixels, labels)
    }

    @discardableResult
    public static func write(directory: String, trainCount: Int, testCount: Int, classes: Int, channels: Int,
                             size: Int, seed: UInt64, shards: Int) throws -> DatasetManifest {
        guard classes >= 2, channels >= 1, size >= 8, trainCount >= 1, testCount >= 0 else {
            throw DIMError("synth: need at least 2 classes, 1 channel, 8x8 images and 1 training image")
        }
        try prepareDatasetDirectory(directory)
        var splits: [String: DatasetManifest.Split] = [:]
        for (split, count, stream) in [("train", trainCount, UInt64(0)), ("test", testCount, 1)] where count > 0 {
            let d = images(count: count, classes: classes, channels: channels, size: size, seed: seed, stream: stream)
            splits[split] = try writeSplit(directory: directory, split: split, images: d.pixels, labels: d.labels,
                                           channels: channels, height: size, width: size, shards: shards)
        }
        let m = DatasetManifest(name: "synth-bars", channels: channels, height: size, width: size,
                                channelOrder: channels == 1 ? "gray" : (channels == 3 ? "RGB" : "\(channels)ch"),
                                classNames: (0..<classes).map { "bar\($0 * 180 / classes)deg" }, splits: splits,
                                source: "dim-dist data synth --seed \(seed)")
        try m.save(directory: directory)
        return m
    }
}

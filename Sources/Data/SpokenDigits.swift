import Dispatch
import Foundation

/// The spoken-digit corpus: the digits 0–9 spoken by `espeak-ng` in several languages,
/// voice variants, speeds and pitches, written as WAV files (22 050 Hz, 16-bit mono) with a
/// `manifest.csv` of `path,word,language,voice,gender,speed,pitch`. It is Parallax's embedded
/// default audio data and what the audio tests use.
///
/// Each clip is `espeak-ng -w FILE -v LANG+VARIANT -s SPEED -p PITCH DIGIT`: espeak reads the
/// numeral in the voice's language. The variants `m1…m7` are male and `f1…f5` female, which
/// gives the gender label. Every (digit, language, voice, speed) is spoken once, at a pitch
/// taken in turn from `pitches`, so pitch varies without multiplying the corpus size.
public struct SpokenDigits: Sendable {
  public var languages: [String]
  public var voices: [String]
  public var speeds: [Int]
  public var pitches: [Int]

  /// Ten languages espeak-ng 1.51 speaks (English, German, French, Spanish, Italian,
  /// Portuguese, Dutch, Polish, Swedish, Russian).
  public static let defaultLanguages = ["en", "de", "fr", "es", "it", "pt", "nl", "pl", "sv", "ru"]
  /// Ten voice variants, five male and five female.
  public static let defaultVoices = ["m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "f4", "f5"]

  /// The default: 10 digits × 10 languages × 10 voices × 2 speeds = 2000 clips, pitches 35,
  /// 50, 65 in turn.
  public init(
    languages: [String] = SpokenDigits.defaultLanguages, voices: [String] = SpokenDigits.defaultVoices,
    speeds: [Int] = [130, 180], pitches: [Int] = [35, 50, 65]
  ) {
    self.languages = languages
    self.voices = voices
    self.speeds = speeds
    self.pitches = pitches
  }

  /// One clip to speak.
  public struct Clip: Equatable, Sendable {
    public var digit: Int
    public var language: String
    public var voice: String
    public var speed: Int
    public var pitch: Int
    /// Path relative to the corpus folder.
    public var relativePath: String { "\(language)/\(language)_\(voice)_s\(speed)_p\(pitch)_\(digit).wav" }
    public var gender: String { SpokenDigits.gender(of: voice) }
  }

  /// `male` for espeak variants `m…`, `female` for `f…`, else `unknown`.
  public static func gender(of voice: String) -> String {
    voice.hasPrefix("m") ? "male" : voice.hasPrefix("f") ? "female" : "unknown"
  }

  /// Every clip of the corpus, in manifest order.
  public var clips: [Clip] {
    var out: [Clip] = []
    var turn = 0
    for language in languages {
      for voice in voices {
        for speed in speeds {
          for digit in 0..<10 {
            out.append(Clip(digit: digit, language: language, voice: voice, speed: speed, pitch: pitches[turn % pitches.count]))
            turn += 1
          }
        }
      }
    }
    return out
  }

  /// Checks every setting before anything is written.
  public func validate() throws {
    guard !languages.isEmpty, !voices.isEmpty, !speeds.isEmpty, !pitches.isEmpty else {
      throw DataError.invalidArgument("spoken digits: languages, voices, speeds and pitches must not be empty")
    }
    for v in voices where SpokenDigits.gender(of: v) == "unknown" {
      throw DataError.invalidArgument("spoken digits: voice \"\(v)\" is not an espeak-ng variant m1…m7 or f1…f5")
    }
    for s in speeds where s < 80 || s > 450 {
      throw DataError.invalidArgument("spoken digits: speed \(s) words/minute is outside espeak-ng's 80…450")
    }
    for p in pitches where p < 0 || p > 99 {
      throw DataError.invalidArgument("spoken digits: pitch \(p) is outside espeak-ng's 0…99")
    }
  }

  /// Speaks every clip into `directory` with `jobs` espeak-ng processes at a time and writes
  /// `manifest.csv` (atomically, last).
  /// - Returns: the number of clips written.
  /// - Throws: `DataError` naming the clip if espeak-ng fails or writes an empty file.
  @discardableResult
  public func generate(into directory: String, jobs: Int = 2, espeak: String = "espeak-ng") throws -> Int {
    try validate()
    let fm = FileManager.default
    for language in languages {
      try fm.createDirectory(atPath: "\(directory)/\(language)", withIntermediateDirectories: true)
    }
    let clips = self.clips
    let lock = NSLock()
    nonisolated(unsafe) var firstError: Error?
    let workers = max(1, min(jobs, clips.count))
    DispatchQueue.concurrentPerform(iterations: workers) { w in
      var i = w
      while i < clips.count {
        lock.lock()
        let stop = firstError != nil
        lock.unlock()
        if stop { return }
        do { try Self.speak(clips[i], into: directory, espeak: espeak) } catch {
          lock.lock()
          if firstError == nil { firstError = error }
          lock.unlock()
          return
        }
        i += workers
      }
    }
    if let error = firstError { throw error }
    var csv = "path,word,language,voice,gender,speed,pitch\n"
    for c in clips {
      csv += "\(c.relativePath),\(c.digit),\(c.language),\(c.voice),\(c.gender),\(c.speed),\(c.pitch)\n"
    }
    let manifest = "\(directory)/manifest.csv"
    do { try csv.write(toFile: manifest, atomically: true, encoding: .utf8) } catch {
      throw DataError.io(path: manifest, operation: "write", reason: "\(error)")
    }
    return clips.count
  }

  static func speak(_ c: Clip, into directory: String, espeak: String) throws {
    let path = "\(directory)/\(c.relativePath)"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [espeak, "-w", path, "-v", "\(c.language)+\(c.voice)", "-s", "\(c.speed)", "-p", "\(c.pitch)", "\(c.digit)"]
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    do { try p.run() } catch {
      throw DataError.invalidArgument("cannot run \(espeak) (install the espeak-ng package): \(error)")
    }
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
      throw DataError.io(path: path, operation: "\(espeak) -v \(c.language)+\(c.voice)", reason: "exit \(p.terminationStatus): \(message)")
    }
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    guard size > 44 else {
      throw DataError.io(path: path, operation: "\(espeak) -v \(c.language)+\(c.voice)", reason: "wrote no audio \(message)")
    }
  }
}

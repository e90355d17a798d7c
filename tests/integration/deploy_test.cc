// deploy/: the files an operator installs from, checked as far as this
// machine can check them. systemd units with systemd-analyze; Kubernetes
// manifests parsed and checked for what a cluster would refuse or silently
// get wrong (required fields, selectors that match their pods, mounts of
// declared volumes, non-root security contexts); Containerfiles for
// multi-stage, non-root images; and every flag that a unit, env file or
// manifest passes exists in the binary it is passed to.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/files.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

namespace fs = std::filesystem;
using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::ReadAll;
using ::dpfleet::testing::RunCommand;
using ::dpfleet::testing::TempDir;

std::string Deploy(const std::string& rel) {
  const char* s = std::getenv("DPFLEET_SOURCE_DIR");
  return std::string(s == nullptr ? "." : s) + "/deploy/" + rel;
}

// The flags a binary accepts, from --helpfull (absl flags, shown with
// underscores; dpfleet also accepts them with dashes).
const std::set<std::string>& FlagsOf(const std::string& binary) {
  static std::map<std::string, std::set<std::string>> cache;
  auto it = cache.find(binary);
  if (it != cache.end()) return it->second;
  std::string out, err;
  RunCommand({BinPath(binary), "--helpfull"}, &out, &err);
  std::set<std::string> flags;
  const std::string text = out + err;
  std::regex re("-(-?)([a-z][a-z0-9_]*)[ =]");
  for (auto m = std::sregex_iterator(text.begin(), text.end(), re); m != std::sregex_iterator(); ++m) {
    flags.insert((*m)[2].str());
  }
  return cache.emplace(binary, flags).first->second;
}

// Every "--flag" or "--flag=value" in `args` is a flag of `binary`.
void ExpectKnownFlags(const std::string& binary, const std::vector<std::string>& args, const std::string& where) {
  const std::set<std::string>& known = FlagsOf(binary);
  ASSERT_GT(known.size(), 5u) << binary << " --helpfull listed no flags";
  for (const std::string& a : args) {
    if (!absl::StartsWith(a, "--")) continue;
    std::string name = a.substr(2, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 2);
    std::replace(name.begin(), name.end(), '-', '_');
    EXPECT_TRUE(known.count(name)) << where << ": " << binary << " has no flag --" << name;
  }
}

std::vector<std::string> Words(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view w : absl::StrSplit(text, absl::ByAnyChar(" \t\""), absl::SkipEmpty())) out.emplace_back(w);
  return out;
}

TEST(SystemdTest, UnitsPassSystemdAnalyzeVerify) {
  if (RunCommand({"systemd-analyze", "--version"}, nullptr, nullptr) != 0) {
    GTEST_SKIP() << "systemd-analyze is not installed";
  }
  TempDir dir;
  const std::string bin_dir = fs::path(BinPath("dpctl")).parent_path().string() + "/";
  // The units name the packaged paths (/usr/bin/...); verify checks that the
  // command exists, so the copies point at this build's binaries.
  for (const std::string unit : {"dpfleet-server.service", "dpfleet-worker@.service"}) {
    std::string text = ReadAll(Deploy("systemd/" + unit));
    ASSERT_FALSE(text.empty()) << unit;
    for (size_t at = text.find("/usr/bin/"); at != std::string::npos; at = text.find("/usr/bin/", at + 1)) {
      text.replace(at, 9, bin_dir);
    }
    testing::WriteAll(dir.Join(unit == "dpfleet-worker@.service" ? "dpfleet-worker@0.service" : unit), text);
  }
  std::string out, err;
  const int rc = RunCommand({"systemd-analyze", "verify", "--man=no", dir.Join("dpfleet-server.service"),
                             dir.Join("dpfleet-worker@0.service")},
                            &out, &err);
  EXPECT_EQ(rc, 0) << out << err;
  // Unknown keys and bad values are only warnings: none may appear.
  EXPECT_EQ(out + err, "");
}

TEST(SystemdTest, UnitsAndEnvFilesPassOnlyFlagsTheBinariesHave) {
  for (const auto& [file, binary] : std::vector<std::pair<std::string, std::string>>{
           {"systemd/dpfleet-server.service", "dpfleet-server"},
           {"systemd/dpfleet-worker@.service", "dpfleet-worker"},
           {"systemd/dpfleet-server.env", "dpfleet-server"},
           {"systemd/dpfleet-worker.env", "dpfleet-worker"}}) {
    const std::string text = ReadAll(Deploy(file));
    ASSERT_FALSE(text.empty()) << file;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (absl::StartsWith(line, "ExecStart=") || absl::StartsWith(line, "DPFLEET_")) {
        ExpectKnownFlags(binary, Words(line), file);
      }
    }
  }
  // The hardening the operators' issue names is there.
  const std::string server = ReadAll(Deploy("systemd/dpfleet-server.service"));
  for (const char* key : {"Type=notify", "ProtectSystem=strict", "NoNewPrivileges=yes", "DynamicUser=yes",
                          "StateDirectory=dpfleet", "Restart=on-failure", "EnvironmentFile="}) {
    EXPECT_THAT(server, ::testing::HasSubstr(key));
  }
  EXPECT_THAT(ReadAll(Deploy("systemd/dpfleet-worker@.service")), ::testing::HasSubstr("--device=cuda:%i"));
}

std::string Str(const YAML::Node& n) { return n && n.IsScalar() ? n.as<std::string>() : ""; }

// Checks one workload's pod template; `binary_of` maps an image name to the
// dpfleet binary it runs.
void CheckPodTemplate(const YAML::Node& workload, const std::string& file,
                      const std::map<std::string, std::string>& binary_of) {
  const YAML::Node spec = workload["spec"];
  const YAML::Node tmpl = spec["template"];
  ASSERT_TRUE(tmpl && tmpl["spec"]) << file << ": no spec.template.spec";
  // The selector must match the template's labels, or the controller never
  // owns its pods.
  for (const auto& kv : spec["selector"]["matchLabels"]) {
    EXPECT_EQ(Str(tmpl["metadata"]["labels"][kv.first.as<std::string>()]), kv.second.as<std::string>())
        << file << ": selector label " << kv.first.as<std::string>() << " is not on the pod template";
  }
  const YAML::Node pod = tmpl["spec"];
  EXPECT_TRUE(pod["securityContext"]["runAsNonRoot"].as<bool>(false)) << file << ": pods must run as non-root";
  EXPECT_NE(pod["securityContext"]["runAsUser"].as<int>(0), 0) << file;
  EXPECT_EQ(Str(pod["securityContext"]["seccompProfile"]["type"]), "RuntimeDefault") << file;
  std::set<std::string> volumes;
  for (const auto& v : pod["volumes"]) volumes.insert(Str(v["name"]));
  for (const auto& v : spec["volumeClaimTemplates"]) volumes.insert(Str(v["metadata"]["name"]));
  ASSERT_TRUE(pod["containers"] && pod["containers"].size() > 0) << file;
  for (const auto& c : pod["containers"]) {
    const std::string image = Str(c["image"]);
    EXPECT_FALSE(image.empty()) << file << ": container without image";
    EXPECT_TRUE(c["resources"]) << file << ": container " << Str(c["name"]) << " has no resources";
    EXPECT_FALSE(c["securityContext"]["allowPrivilegeEscalation"].as<bool>(true)) << file;
    EXPECT_EQ(Str(c["securityContext"]["capabilities"]["drop"][0]), "ALL") << file;
    for (const auto& m : c["volumeMounts"]) {
      EXPECT_TRUE(volumes.count(Str(m["name"]))) << file << ": mounts undeclared volume " << Str(m["name"]);
    }
    std::set<std::string> ports;
    for (const auto& p : c["ports"]) ports.insert(Str(p["name"]));
    for (const char* probe : {"livenessProbe", "readinessProbe"}) {
      if (c[probe]) EXPECT_TRUE(ports.count(Str(c[probe]["httpGet"]["port"]))) << file << ": " << probe;
    }
    auto b = binary_of.find(image);
    ASSERT_NE(b, binary_of.end()) << file << ": unknown image " << image;
    std::vector<std::string> args;
    for (const auto& a : c["args"]) args.push_back(a.as<std::string>());
    ExpectKnownFlags(b->second, args, file);
  }
}

TEST(KubernetesTest, TheBaseIsCompleteAndEveryManifestIsSound) {
  const YAML::Node kustomization = YAML::LoadFile(Deploy("kubernetes/base/kustomization.yaml"));
  ASSERT_EQ(Str(kustomization["kind"]), "Kustomization");
  const std::map<std::string, std::string> binary_of = {{"dpfleet-server", "dpfleet-server"},
                                                        {"dpfleet-worker-cuda", "dpfleet-worker"},
                                                        {"dpfleet-worker-cpu", "dpfleet-worker"}};
  std::set<std::string> images;
  for (const auto& i : kustomization["images"]) images.insert(Str(i["name"]));
  std::map<std::string, int> kinds;
  std::set<std::string> listed, secrets, wanted_secrets;
  for (const auto& r : kustomization["resources"]) {
    const std::string file = r.as<std::string>();
    listed.insert(file);
    std::vector<YAML::Node> docs;
    ASSERT_NO_THROW(docs = YAML::LoadAllFromFile(Deploy("kubernetes/base/" + file))) << file;
    ASSERT_FALSE(docs.empty()) << file;
    for (const YAML::Node& doc : docs) {
    for (const char* field : {"apiVersion", "kind"}) EXPECT_FALSE(Str(doc[field]).empty()) << file << ": " << field;
    EXPECT_FALSE(Str(doc["metadata"]["name"]).empty()) << file << ": metadata.name";
    const std::string kind = Str(doc["kind"]);
    kinds[kind]++;
    if (kind == "StatefulSet" || kind == "DaemonSet" || kind == "Deployment") {
      CheckPodTemplate(doc, file, binary_of);
      for (const auto& c : doc["spec"]["template"]["spec"]["containers"]) {
        EXPECT_TRUE(images.count(Str(c["image"]))) << file << ": image not set in kustomization.yaml";
      }
    }
    if (kind == "DaemonSet") {
      const YAML::Node limits = doc["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"];
      EXPECT_EQ(Str(limits["nvidia.com/gpu"]), "1") << file;
      EXPECT_TRUE(doc["spec"]["template"]["spec"]["nodeSelector"]) << file;
    }
    if (kind == "StatefulSet") {
      const YAML::Node c = doc["spec"]["template"]["spec"]["containers"][0];
      EXPECT_TRUE(c["livenessProbe"]) << file;
      EXPECT_TRUE(c["readinessProbe"]) << file;
      EXPECT_EQ(Str(c["readinessProbe"]["httpGet"]["path"]), "/readyz");
      EXPECT_EQ(doc["spec"]["replicas"].as<int>(), 1) << "the ledger has one writer";
      EXPECT_TRUE(doc["spec"]["volumeClaimTemplates"]) << file;
    }
    if (kind == "Secret") secrets.insert(Str(doc["metadata"]["name"]));
    if (kind == "StatefulSet" || kind == "DaemonSet" || kind == "Deployment") {
      for (const auto& v : doc["spec"]["template"]["spec"]["volumes"]) {
        if (v["secret"]) wanted_secrets.insert(Str(v["secret"]["secretName"]));
      }
    }
    if (kind == "ServiceMonitor") {
      for (const auto& e : doc["spec"]["endpoints"]) {
        wanted_secrets.insert(Str(e["authorization"]["credentials"]["name"]));
        wanted_secrets.insert(Str(e["tlsConfig"]["ca"]["secret"]["name"]));
      }
    }
    }
  }
  // Every secret a pod or the ServiceMonitor reads is declared in the base.
  for (const std::string& name : wanted_secrets) EXPECT_TRUE(secrets.count(name)) << "secret " << name;
  EXPECT_GE(wanted_secrets.size(), 3u);
  // Every manifest in the folder is part of the base.
  for (const auto& e : fs::directory_iterator(Deploy("kubernetes/base"))) {
    const std::string name = e.path().filename().string();
    if (name != "kustomization.yaml") EXPECT_TRUE(listed.count(name)) << name << " is not in kustomization.yaml";
  }
  for (const char* kind : {"Namespace", "StatefulSet", "Service", "DaemonSet", "Deployment", "ServiceMonitor"}) {
    EXPECT_EQ(kinds[kind], 1) << kind;
  }
}

TEST(ContainerTest, ImagesAreMultiStageAndRunAsAnUnprivilegedUser) {
  int files = 0;
  for (const auto& e : fs::directory_iterator(Deploy("container"))) {
    if (e.path().extension() != ".Containerfile") continue;
    ++files;
    const std::string name = e.path().filename().string();
    const std::string text = ReadAll(e.path().string());
    int stages = 0;
    std::string last_user, entrypoint;
    bool after_last_from = false;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (absl::StartsWith(line, "FROM ")) {
        ++stages;
        last_user.clear();
        after_last_from = true;
      }
      if (absl::StartsWith(line, "USER ")) last_user = std::string(line.substr(5));
      if (absl::StartsWith(line, "ENTRYPOINT ")) entrypoint = std::string(line.substr(11));
      EXPECT_FALSE(absl::StartsWith(line, "ADD http")) << name << ": fetches from the network unverified";
    }
    EXPECT_TRUE(after_last_from);
    EXPECT_GE(stages, 2) << name << ": build and runtime stages";
    EXPECT_FALSE(last_user.empty()) << name << ": the runtime stage must set USER";
    EXPECT_NE(last_user, "0") << name;
    EXPECT_NE(last_user, "root") << name;
    EXPECT_THAT(entrypoint, ::testing::HasSubstr("/opt/dpfleet/bin/")) << name;
    // Flags baked into the entrypoint exist.
    const std::string binary = absl::StrContains(entrypoint, "dpfleet-server")   ? "dpfleet-server"
                               : absl::StrContains(entrypoint, "dpfleet-worker") ? "dpfleet-worker"
                                                                                 : "dpctl";
    if (binary != "dpctl") ExpectKnownFlags(binary, Words(entrypoint.substr(0, entrypoint.size())), name);
  }
  EXPECT_EQ(files, 4) << "server, CPU worker, CUDA worker, dpctl";
}

}  // namespace
}  // namespace dpfleet

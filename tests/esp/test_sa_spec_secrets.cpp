// meshgate-esp prints parse_sa_spec's message on stderr: a typo in a spec must not put the key there. Found by
// tests/fuzz/fuzz_sa_spec (regression inputs in tests/fuzz/corpus/sa_spec/typo-*).
#include <gtest/gtest.h>

#include <string>

#include "esp/esp.h"

namespace {

const std::string kKey = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";  // 20 bytes: aes-gcm-128 key + salt

TEST(SaSpecSecrets, TyposNeverEchoTheKey) {
  const std::string bad[] = {
      "spi=1,cipher=aes-gcm-128,key:" + kKey,                 // ':' for '='
      "spi=1,cipher=aes-gcm-128key=" + kKey,                  // a missing comma: the key inside the cipher value
      "spi=1,cipher=aes-gcm-128,engine=ipsecmbkey=" + kKey,   // ... inside the engine value
      "spi=1,cipher=aes-gcm-128,key=" + kKey.substr(0, 8) + "," + kKey.substr(8),  // a comma inside the key
      "spi=1,cipher=aes-gcm-128,k" + kKey + "=1",             // a mangled field name
      "spi=1,cipher=aes-gcm-128,key=" + kKey.substr(0, 16) + ":" + kKey.substr(16, 8) + " x",
      "spi=1,cipher=aes-gcm-128,key_file=" + kKey,            // the key where its file's path belongs
      "spi=1,cipher=aes-gcm-128,key_file=/etc/" + kKey + ".key",
  };
  for (const std::string& spec : bad) {
    mg::esp::SaConfig c;
    std::string err;
    EXPECT_FALSE(mg::esp::parse_sa_spec(spec, &c, &err)) << spec;
    EXPECT_FALSE(err.empty());
    for (size_t i = 0; i + 8 <= kKey.size(); i += 4)
      EXPECT_EQ(err.find(kKey.substr(i, 8)), std::string::npos) << spec << " -> " << err;
  }
}

TEST(SaSpecSecrets, HarmlessValuesAreStillQuoted) {
  mg::esp::SaConfig c;
  std::string err;
  EXPECT_FALSE(mg::esp::parse_sa_spec("spi=1,cipher=aes-gcm-192,key=" + kKey, &c, &err));
  EXPECT_NE(err.find("'aes-gcm-192'"), std::string::npos) << err;
  EXPECT_FALSE(mg::esp::parse_sa_spec("spi=1,cipher=aes-gcm-128,key=" + kKey + ",colour=blue", &c, &err));
  EXPECT_NE(err.find("'colour'"), std::string::npos) << err;
}

}  // namespace
